# Shared by the benchmark scripts (`bench-load.sh`, `count-instructions.sh`); sourced, not run.

# Installs each missing command from its Debian package: `need_tools h2load:nghttp2-client ...`.
need_tools() {
  local tool
  for tool in "$@"; do
    if ! command -v "${tool%%:*}" >/dev/null; then
      echo "installing ${tool%%:*} (Debian ${tool#*:})" >&2
      apt-get update -qq && apt-get install -y -qq "${tool#*:}" >/dev/null
    fi
  done
}

# Writes a one-day self-signed P-256 certificate for 127.0.0.1 and localhost to DIR/tls.crt and
# DIR/tls.key.
make_test_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$1/tls.key" -out "$1/tls.crt" 2>/dev/null
}

# Waits until a TCP port on 127.0.0.1 accepts connections, trying TRIES times (default 200)
# every INTERVAL seconds (default 0.05); fails with a message after that.
wait_port() { # port [tries] [interval]
  local port="$1" tries="${2:-200}" interval="${3:-0.05}"
  for _ in $(seq 1 "$tries"); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep "$interval"
  done
  echo "server on port $port did not come up" >&2
  return 1
}
