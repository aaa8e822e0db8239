#!/usr/bin/env bash
# Instructions per request through the whole server (TLS, HTTP, review, logging, metrics), for
# the webhook and the reference server, counted by valgrind's callgrind. Unlike the load
# benchmark's CPU times these counts do not depend on what else the machine is doing: the same
# binary and inputs give the same count within a fraction of a percent.
#
#   scripts/count-instructions.sh            # N=1000: runs of 1000 and 4000 requests
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
FIXTURE="${FIXTURE:-tests/data/admission-reviews/pod-create-earthly-all-in-one-from-job.json}"

cd "$(dirname "$0")/.."
for tool in valgrind:valgrind h2load:nghttp2-client openssl:openssl; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${tool#*:}" >/dev/null
  fi
done
cargo build --release --bin earthly-webhook --example reference_server >&2

work="$(mktemp -d)"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1" \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

# Prints the total instructions of one server run that answers $2 requests.
count() { # server requests
  local out="$work/callgrind.$1.$2"
  local cmd
  case "$1" in
    ours) cmd=(target/release/earthly-webhook --log-format json serve --listen "127.0.0.1:$PORT"
      --admin-listen "127.0.0.1:$ADMIN_PORT" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key") ;;
    ref) cmd=(target/release/examples/reference_server "127.0.0.1:$PORT" "$work/tls.crt" "$work/tls.key") ;;
  esac
  valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >/dev/null 2>"$work/valgrind.log" &
  pid=$!
  local up=""
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then up=1; break; fi
    sleep 0.1
  done
  [[ -n "$up" ]] || { echo "$1 did not start under valgrind" >&2; cat "$work/valgrind.log" >&2; exit 1; }
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
