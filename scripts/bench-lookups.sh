#!/usr/bin/env bash
# Lookup benchmark (issue 17): per-review CPU, allocations, RSS growth and peak RSS of the
# reviews that list a namespace (a bare buildkitd pod CREATE), against a fake API server on
# 127.0.0.1 holding N Services and N buildkitd pods. See examples/lookup_bench.rs for what each
# column means. Not a test and not run in CI: it measures, and takes a minute or two after the
# build.
#
#   scripts/bench-lookups.sh              # N = 10 1000 10000
#   scripts/bench-lookups.sh 10 100000    # other sizes
#   PROFILE=release scripts/bench-lookups.sh
#
# Output: a Markdown table (docs/benchmarks.md, "Lookups").
set -euo pipefail

PROFILE="${PROFILE:-bench-build}"
cd "$(dirname "$0")/.."
cargo build --locked --profile "$PROFILE" --example lookup_bench >&2
echo "profile: $PROFILE; machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec "target/$PROFILE/examples/lookup_bench" run "$@"
