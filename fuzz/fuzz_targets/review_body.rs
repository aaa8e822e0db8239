//! libFuzzer target: any bytes as a request body, on every endpoint and mode, with the default
//! config and one that turns on every mutation rule. The properties are in `../oracle.rs`.
#![no_main]

#[path = "../oracle.rs"]
mod oracle;

use std::sync::LazyLock;

use earthly_webhook::cluster::NoCluster;
use earthly_webhook::config::Config;
use earthly_webhook::review::Policy;
use libfuzzer_sys::fuzz_target;

static POLICIES: LazyLock<[Policy; 2]> = LazyLock::new(|| {
    let full = Config::from_yaml(
        r#"
mutation:
  scratchVolume: {name: scratch, source: {emptyDir: {sizeLimit: 50Gi}}}
  cniMtu: 1450
  tolerations:
    - {key: earthly.dev/privileged, operator: Exists, effect: NoSchedule}
  nodeSelector: {earthly.dev/pool: privileged}
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: earthly.dev/pool, operator: In, values: [privileged]}]
"#,
        "fuzz",
    )
    .expect("config");
    [
        Policy::new(Config::default()).expect("policy"),
        Policy::new(full).expect("policy"),
    ]
});

fuzz_target!(|body: &[u8]| {
    for policy in POLICIES.iter() {
        for route in oracle::ROUTES {
            oracle::check(policy, &NoCluster, route, body);
        }
    }
});
