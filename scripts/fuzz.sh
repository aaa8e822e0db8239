#!/usr/bin/env bash
# Coverage-guided fuzzing of review::review_body with libFuzzer on the STABLE toolchain.
#
#   scripts/fuzz.sh [RUNS] [MAX_SECONDS] [extra libFuzzer flags...]
#
# `cargo fuzz` needs nightly only for its sanitizer flags (-Zsanitizer); the coverage
# instrumentation libFuzzer needs is plain LLVM (`-Cpasses=sancov-module` and `-Cllvm-args`),
# which stable rustc accepts. So this builds the cargo-fuzz-layout crate in fuzz/ with those
# flags, then runs the target over a working copy of the checked-in seed corpus. It stops after
# RUNS executions (default 1,000,000) or MAX_SECONDS (default 600), whichever comes first.
# Findings are written to fuzz/artifacts/review_body/; new corpus entries stay in
# target/fuzz-corpus/ (copy interesting ones into fuzz/corpus/review_body/ by hand).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
runs="${1:-1000000}"
max_seconds="${2:-600}"
shift $(( $# > 2 ? 2 : $# ))

export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cllvm-args=-sanitizer-coverage-stack-depth \
 -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$PWD/../target/fuzz"
# An explicit --target keeps RUSTFLAGS off build scripts and proc macros, which would otherwise
# be instrumented and fail to link without libFuzzer (cargo fuzz does the same).
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --target "$host" --bin review_body

work="$PWD/../target/fuzz-corpus/review_body"
mkdir -p "$work" artifacts/review_body
cp -n corpus/review_body/* "$work/" 2>/dev/null || true
"$CARGO_TARGET_DIR/$host/release/review_body" "$work" \
  -runs="$runs" -max_total_time="$max_seconds" -max_len=65536 -timeout=10 \
  -artifact_prefix="$PWD/artifacts/review_body/" -print_final_stats=1 "$@"
