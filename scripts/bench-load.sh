#!/usr/bin/env bash
# Load benchmark: the shipped webhook (cargo profile `dist`) against a bare hyper + rustls reference server, both over
# HTTPS with HTTP/1.1 keep-alive (how the kube-apiserver calls webhooks), driven by h2load with a
# captured Earthly all-in-one pod review posted to /mutate (which gets a real patch back).
#
#   scripts/bench-load.sh                 # 4 rounds of 1, 16 and 64 connections
#   ROUNDS=6 REQUESTS=40000 scripts/bench-load.sh
#   WORKERS=2 REF_WORKERS=1 scripts/bench-load.sh   # runtime worker threads of each server
#   PROFILE=release scripts/bench-load.sh            # both servers built with another profile
#   OURS_BIN=/tmp/other-build scripts/bench-load.sh  # another build of the webhook (A/B runs)
#
# The webhook runs with --worker-threads WORKERS (default: its own default, 1, which is also the
# chart's); the reference server with TOKIO_WORKER_THREADS=REF_WORKERS (default: tokio's, one
# per core).
#
# Each measurement starts a fresh server, warms it up, then sends REQUESTS requests (at least
# 200 per connection) and reads from /proc the server's CPU time (utime+stime, all threads) and
# peak RSS (VmHWM). Rounds alternate which server goes first, so drifting background load hits
# both alike; keep ROUNDS even so each goes first equally often. Latency percentiles come from
# h2load's per-request log. Everything runs on
# 127.0.0.1; each h2load run is capped at RUN_TIMEOUT seconds and the script stops itself.
#
# Output: one line per measurement, then the medians per server and connection count and our
# numbers as ratios to the reference's. Units: requests/s, microseconds (latency and CPU per
# request), KiB (RSS).
set -euo pipefail

ROUNDS="${ROUNDS:-4}"
REQUESTS="${REQUESTS:-30000}"
WARMUP="${WARMUP:-3000}"
CONNECTIONS="${CONNECTIONS:-1 16 64}"
RUN_TIMEOUT="${RUN_TIMEOUT:-120}"
CLIENT_THREADS="${CLIENT_THREADS:-1}"
WORKERS="${WORKERS:-}"
REF_WORKERS="${REF_WORKERS:-}"
PORT_OURS="${PORT_OURS:-18443}"
PORT_ADMIN="${PORT_ADMIN:-18080}"
PORT_REF="${PORT_REF:-18444}"
PROFILE="${PROFILE:-dist}"
FIXTURE="${FIXTURE:-tests/data/admission-reviews/pod-create-earthly-all-in-one-from-job.json}"

cd "$(dirname "$0")/.."
root="$PWD"
source scripts/bench-common.sh

need_tools h2load:nghttp2-client openssl:openssl

cargo build --locked --profile "$PROFILE" --bin earthly-webhook --example reference_server >&2
ours_bin="${OURS_BIN:-$root/target/$PROFILE/earthly-webhook}"
ref_bin="$root/target/$PROFILE/examples/reference_server"

work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

make_test_cert "$work"

# Waits (bounded) until the webhook's /readyz says ready.
wait_ready() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT_ADMIN" && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && grep -q ' 200 ' <&3) 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "webhook did not become ready" >&2
  return 1
}

start_server() {
  case "$1" in
    ours)
      "$ours_bin" --log-format json serve --listen "127.0.0.1:$PORT_OURS" \
        --admin-listen "127.0.0.1:$PORT_ADMIN" --tls-cert "$work/tls.crt" --tls-key "$work/tls.key" \
        ${WORKERS:+--worker-threads "$WORKERS"} 2>>"$work/ours.log" >/dev/null &
      server_pid=$!
      wait_ready
      ;;
    ref)
      env ${REF_WORKERS:+TOKIO_WORKER_THREADS="$REF_WORKERS"} "$ref_bin" "127.0.0.1:$PORT_REF" "$work/tls.crt" "$work/tls.key" >/dev/null 2>&1 &
      server_pid=$!
      wait_port "$PORT_REF"
      ;;
  esac
}

stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

cpu_ticks() { # utime + stime of every thread, in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

url_of() {
  case "$1" in
    ours) echo "https://127.0.0.1:$PORT_OURS/mutate" ;;
    ref) echo "https://127.0.0.1:$PORT_REF/mutate" ;;
  esac
}

load() { # server conns requests logfile
  local n="$3"
  (( n < $2 * 200 )) && n=$(( $2 * 200 ))
  # h2load appends to its log file.
  [[ -n "${4:-}" ]] && rm -f "$4"
  timeout "$RUN_TIMEOUT" h2load --h1 -n "$n" -c "$2" -t "$CLIENT_THREADS" -d "$FIXTURE" \
    -H 'content-type: application/json' ${4:+--log-file="$4"} "$(url_of "$1")"
}

tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
results="$work/results.tsv"
: >"$results"
echo "worker threads: ours ${WORKERS:-default (1)}, reference ${REF_WORKERS:-default (one per core)}"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %-4s %5s %10s %9s %9s %9s %7s %12s %9s\n' \
  server round conns req/s p50_us p99_us p99.9_us errors cpu_us/req rss_KiB

for round in $(seq 1 "$ROUNDS"); do
  if (( round % 2 )); then order="ours ref"; else order="ref ours"; fi
  for conns in $CONNECTIONS; do
    for server in $order; do
      start_server "$server"
      load "$server" "$conns" "$WARMUP" "" >/dev/null
      before=$(cpu_ticks "$server_pid")
      out="$(load "$server" "$conns" "$REQUESTS" "$work/req.log")"
      after=$(cpu_ticks "$server_pid")
      rss=$(awk '/VmHWM/ { print $2 }' "/proc/$server_pid/status")
      stop_server
      rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
      done_n=$(sed -n 's/^requests: .* \([0-9]*\) done, \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\1/p' <<<"$out")
      bad=$(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout.*/\2+\3+\4/p' <<<"$out")
      read -r p50 p99 p999 non200 < <(python3 - "$work/req.log" <<'PY'
import sys
lat, non200 = [], 0
for line in open(sys.argv[1]):
    cols = line.split("\t")
    if len(cols) < 3:
        continue
    if cols[1] != "200":
        non200 += 1
    lat.append(int(cols[2]))
lat.sort()
def pct(p):
    return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else 0
print(pct(50), pct(99), pct(99.9), non200)
PY
)
      errors=$(( ${bad:-0} + non200 ))
      cpu_per_req=$(python3 -c "print(f'{($after - $before) * $tick_us / max(1, ${done_n:-0}):.1f}')")
      printf '%-5s %-4s %5s %10s %9s %9s %9s %7s %12s %9s\n' \
        "$server" "$round" "$conns" "$rps" "$p50" "$p99" "$p999" "$errors" "$cpu_per_req" "$rss"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$server" "$round" "$conns" "$rps" "$p50" "$p99" "$p999" "$errors" "$cpu_per_req" "$rss" >>"$results"
    done
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cols = ["rps", "p50", "p99", "p999", "errors", "cpu", "rss"]
med = {}
for r in rows:
    key = (r[0], int(r[2]))
    med.setdefault(key, []).append([float(x) for x in r[3:]])
print("\nmedians over rounds (req/s; latency and CPU in microseconds; RSS in KiB)")
print(f"{'server':6} {'conns':>5} {'req/s':>10} {'p50':>7} {'p99':>7} {'p99.9':>7} {'errors':>6} {'cpu/req':>8} {'rssKiB':>8}")
summary = {}
for key in sorted(med):
    vals = [statistics.median(c) for c in zip(*med[key])]
    summary[key] = dict(zip(cols, vals))
    v = summary[key]
    print(f"{key[0]:6} {key[1]:5d} {v['rps']:10.0f} {v['p50']:7.0f} {v['p99']:7.0f} {v['p999']:7.0f} {v['errors']:6.0f} {v['cpu']:8.1f} {v['rss']:8.0f}")
print("\nours / reference (CPU and latency: lower is better; req/s: higher is better)")
print(f"{'conns':>5} {'req/s':>7} {'p50':>7} {'p99':>7} {'p99.9':>7} {'cpu/req':>8} {'rss':>7}")
for conns in sorted({k[1] for k in summary}):
    o, r = summary.get(("ours", conns)), summary.get(("ref", conns))
    if not o or not r:
        continue
    ratio = lambda c: o[c] / r[c] if r[c] else float("nan")
    print(f"{conns:5d} {ratio('rps'):7.2f} {ratio('p50'):7.2f} {ratio('p99'):7.2f} {ratio('p999'):7.2f} {ratio('cpu'):8.2f} {ratio('rss'):7.2f}")
PY
