//! libFuzzer target: any bytes as a request body, on every endpoint and mode, with the default
//! config and one that turns on every mutation rule. The properties are in `../oracle.rs`.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    oracle::check_everywhere(body);
});
