//! The `earthly-webhook` binary: everything lives in the library.

// Decoding a pod allocates a few hundred small strings and vectors per review; glibc's malloc
// was a quarter of the server's instructions under load (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    earthly_webhook::cli::main()
}
