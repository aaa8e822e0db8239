# syntax=docker/dockerfile:1
# The earthly-webhook server image:
#
#   docker build -t earthly-webhook:0.1.0 .
#
# One pinned Rust version (the toolchain CI uses), the same build command CI runs
# (`cargo build --release --locked`), dependencies built in their own cached layer, and a
# minimal glibc runtime image running as a numeric non-root user. The server writes nothing to
# the filesystem when given --tls-cert/--tls-key, so the chart runs it with a read-only root
# filesystem.

FROM rust:1.95-bookworm AS builder
WORKDIR /build

# 1. Dependencies only. This layer is rebuilt only when Cargo.toml or Cargo.lock change: the
#    crate is compiled once against stub sources, which leaves every dependency built in
#    target/. Cargo refuses a manifest whose declared [[bench]]/[[test]]/[[example]] files are
#    missing, so those get stubs too.
COPY Cargo.toml Cargo.lock ./
RUN <<'STUBS'
set -eu
mkdir -p src
echo 'fn main() {}' > src/main.rs
: > src/lib.rs
awk '
  function flush() { if (dir != "" && name != "") print (path != "" ? path : dir "/" name ".rs"); dir = ""; name = ""; path = "" }
  /^\[\[bench\]\]/   { flush(); dir = "benches"; next }
  /^\[\[test\]\]/    { flush(); dir = "tests"; next }
  /^\[\[example\]\]/ { flush(); dir = "examples"; next }
  /^\[/              { flush(); next }
  dir != "" && /^[[:space:]]*name[[:space:]]*=/ { v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*$/, "", v); name = v }
  dir != "" && /^[[:space:]]*path[[:space:]]*=/ { v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*$/, "", v); path = v }
  END { flush() }
' Cargo.toml | while read -r stub; do mkdir -p "$(dirname "$stub")"; echo 'fn main() {}' > "$stub"; done
STUBS
RUN cargo build --release --locked

# 2. The real sources. Their files keep the build context's (older) modification times, so
#    they are touched: otherwise cargo could take the stub build of the crate as up to date.
COPY src ./src
RUN find src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked \
 && ./target/release/earthly-webhook --help >/dev/null

# 3. Runtime: distroless cc (glibc and libgcc from Debian 12, like the builder; no shell, no
#    package manager). rustls and ring need no OpenSSL.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /build/target/release/earthly-webhook /earthly-webhook
# 65532 is distroless's `nonroot`; numeric so that `runAsNonRoot` can be checked by kubelet.
USER 65532:65532
# 8443: HTTPS webhook (--listen); 8080: plain-HTTP /healthz, /readyz, /metrics (--admin-listen).
EXPOSE 8443 8080
ENTRYPOINT ["/earthly-webhook"]
CMD ["serve"]
