#!/usr/bin/env bash
# Instructions per request through the whole server (TLS, HTTP, review, logging, metrics), for
# the webhook and the reference server, counted by valgrind's callgrind. Unlike the load
# benchmark's CPU times these counts do not depend on what else the machine is doing: the same
# binary and inputs give the same count within a fraction of a percent.
#
#   scripts/count-instructions.sh            # N=1000: runs of 1000 and 4000 requests
#   PROFILE=release scripts/count-instructions.sh   # another cargo profile (default: dist)
#
# Each server runs under callgrind twice, once for N and once for 4N requests (h2load --h1, 16
# keep-alive connections, the all-in-one pod review to /mutate); the difference divided by 3N
# is the cost of one request with start-up, handshakes and shutdown cancelled out. Takes about
# two minutes. Needs valgrind and h2load (installed with apt if missing).
set -euo pipefail

N="${N:-1000}"
CONNS="${CONNS:-16}"
PORT="${PORT:-18543}"
ADMIN_PORT="${ADMIN_PORT:-18580}"
PROFILE="${PROFILE:-dist}"
FIXTURE="${FIXTURE:-tests/data/admission-reviews/pod-create-earthly-all-in-one-from-job.json}"

cd "$(dirname "$0")/.."
source scripts/bench-common.sh
need_tools valgrind:valgrind h2load:nghttp2-client openssl:openssl
cargo build --profile "$PROFILE" --bin earthly-webhook --example reference_server >&2

work="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
make_test_cert "$work"

# Prints the total instructions of one server run that answers $2 requests.
count() { # server requests
  local out="$work/callgrind.$1.$2"
  local cmd
  case "$1" in
    ours) cmd=(target/"$PROFILE"/earthly-webhook --log-format json serve --listen "127.0.0.1:$PORT"
      --admin-listen "127.0.0.1:$ADMIN_PORT" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key") ;;
    ref) cmd=(target/"$PROFILE"/examples/reference_server "127.0.0.1:$PORT" "$work/tls.crt" "$work/tls.key") ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >/dev/null 2>"$work/valgrind.log" &
  pid=$!
  # Under valgrind start-up takes seconds.
  wait_port "$PORT" 300 0.1 || { cat "$work/valgrind.log" >&2; exit 1; }
  local report
  report=$(timeout 300 h2load --h1 -n "$2" -c "$CONNS" -d "$FIXTURE" \
    -H 'content-type: application/json' "https://127.0.0.1:$PORT/mutate")
  grep -q " $2 succeeded" <<<"$report" || { echo "$1: requests failed: $report" >&2; exit 1; }
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }'
}

echo "instructions per request (user space, $CONNS connections, (count(4N) - count(N)) / 3N, N=$N)"
declare -A per
for server in ours ref; do
  a=$(count "$server" "$N")
  b=$(count "$server" $((4 * N)))
  per[$server]=$(( (b - a) / (3 * N) ))
  printf '%-4s %9d\n' "$server" "${per[$server]}"
done
python3 -c "print(f'ours / ref: {${per[ours]} / ${per[ref]}:.2f}')"
