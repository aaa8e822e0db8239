# syntax=docker/dockerfile:1
# The earthly-webhook server image:
#
#   docker build -t earthly-webhook:0.1.0 .
#
# One pinned Rust version in every Rust stage (the toolchain CI uses), the same build command CI's
# release step runs (`cargo build --profile dist --locked`: fat LTO, one codegen unit; see
# Cargo.toml), dependencies built in their own cached layer by cargo-chef, and a minimal glibc
# runtime image running as a numeric non-root user. The server writes nothing to the filesystem
# when given --tls-cert/--tls-key, so the chart runs it with a read-only root filesystem.
# tests/dockerfile.rs checks that these cargo commands are the ones .ci/run runs.

FROM rust:1.95-bookworm AS chef
# Installed once per builder cache; --locked builds it with the versions its authors tested.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

# 1. The recipe: the manifests and the targets they declare, without the sources. It changes
#    only when Cargo.toml or Cargo.lock (or the list of targets) changes.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# 2. Dependencies only, from the recipe: this layer is reused until the recipe changes. Same
#    profile and flags as the real build, or its artefacts would not be reused.
FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --profile dist --locked --recipe-path recipe.json

# 3. The real sources, then the build CI runs.
COPY . .
RUN cargo build --profile dist --locked \
 && ./target/dist/earthly-webhook --help >/dev/null

# 4. Runtime: distroless cc (glibc and libgcc from Debian 12, like the builder; no shell, no
#    package manager). rustls and ring need no OpenSSL.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /build/target/dist/earthly-webhook /earthly-webhook
# 65532 is distroless's `nonroot`; numeric so that `runAsNonRoot` can be checked by kubelet.
USER 65532:65532
# No transparent huge pages for mimalloc's heap, also on nodes whose THP mode is `always` (the
# `no_thp` build feature covers `madvise`): with them RSS grew in 2 MiB steps and the steady RSS
# was 19 MiB instead of 12 (docs/benchmarks.md, "Lookups").
ENV MIMALLOC_ALLOW_THP=0
# 8443: HTTPS webhook (--listen); 8080: plain-HTTP /healthz, /readyz, /metrics (--admin-listen).
EXPOSE 8443 8080
ENTRYPOINT ["/earthly-webhook"]
CMD ["serve"]
