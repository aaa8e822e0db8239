//! The `earthly-webhook` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    earthly_webhook::cli::main()
}
