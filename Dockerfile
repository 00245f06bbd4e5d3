# The gateway image: the release binary on distroless, running as uid 65532.
#
#   docker build -t sigv4-gateway --build-arg GATEWAY_BUILD_COMMIT=$(git rev-parse HEAD) .
#   docker run --rm sigv4-gateway                     # prints `gateway --help`
#   docker run --rm sigv4-gateway --version
#
# docker-compose.yml runs the whole demo mesh on it; deploy/README.md explains both, and
# scripts/check-deploy lints this file (hadolint) without a container engine.

# ---------------------------------------------------------------------------------------
# Planner: the workspace skeleton. Every workspace member's Cargo.toml, the lock file,
# and a stub `fn main() {}` at the path of every target cargo knows of (libs, bins,
# benches, tests, build scripts, whatever the members declare), found by
# `cargo metadata`, so a new member or target needs no change here. The skeleton's
# content changes only when a manifest or the target list does, so the dependency layer
# below stays cached across source edits (COPY's cache key is the files' content).
FROM rust:1.95-bookworm AS planner
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
RUN mkdir -p /plan \
    && cp Cargo.toml Cargo.lock /plan/ \
    && cargo metadata --no-deps --format-version 1 > /tmp/metadata.json \
    && grep -o '"manifest_path":"[^"]*"' /tmp/metadata.json | cut -d '"' -f 4 \
       | while read -r manifest; do \
             mkdir -p "$(dirname "/plan/${manifest#/src/}")" \
             && cp "$manifest" "/plan/${manifest#/src/}"; \
         done \
    && grep -o '"src_path":"[^"]*"' /tmp/metadata.json | cut -d '"' -f 4 \
       | while read -r target; do \
             mkdir -p "$(dirname "/plan/${target#/src/}")" \
             && echo 'fn main() {}' > "/plan/${target#/src/}"; \
         done

# ---------------------------------------------------------------------------------------
# Builder. Debian 12 (bookworm), as the runtime image below, so the glibc matches.
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# The directories the compose `init` service writes to, owned by the runtime user: an
# empty named volume mounted there takes this owner and mode on first use, so `gateway
# certs` (running as 65532) can write the mesh's CA, certificates and keys into it.
RUN mkdir -p /staging/var/lib/sigv4-gateway/certs \
    && chmod 0755 /staging/var/lib/sigv4-gateway /staging/var/lib/sigv4-gateway/certs

# 1. The dependency layer: the skeleton only (manifests, Cargo.lock, stub sources), so
#    every dependency is compiled here and cached until a manifest or Cargo.lock changes.
COPY --from=planner /plan ./
# The release build: the same command as scripts/check-deploy's RELEASE_BUILD (CI builds
# the exact binary this image ships). Keep the two identical; check-deploy compares them.
RUN cargo build --release --locked -p gateway --bin gateway

# 2. The real sources over the stubs; only the workspace's own crates recompile. COPY
#    keeps the files' modification times, which can be older than the stub build's
#    outputs, so the sources are touched to make cargo rebuild them.
COPY . .
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} +
# The commit `gateway --version` and the gateway_build_info metric report (the build
# context has no .git). Declared here, after the dependency layer, so a new commit does
# not invalidate that layer's cache.
ARG GATEWAY_BUILD_COMMIT=""
ENV GATEWAY_BUILD_COMMIT=${GATEWAY_BUILD_COMMIT}
# The release build: the same command as scripts/check-deploy's RELEASE_BUILD. Keep the
# two identical; check-deploy compares them.
RUN cargo build --release --locked -p gateway --bin gateway

# ---------------------------------------------------------------------------------------
# Runtime: glibc, libgcc, CA certificates, /etc/passwd with `nonroot` (65532); no shell,
# no package manager. The gateway needs nothing else (rustls with ring, no OpenSSL).
FROM gcr.io/distroless/cc-debian12:nonroot

ARG GATEWAY_BUILD_COMMIT=""
LABEL org.opencontainers.image.title="sigv4-gateway" \
      org.opencontainers.image.description="SigV4 service-to-service auth gateway: verifies AWS Signature Version 4, applies a cross-PBC allow matrix, forwards over TLS with a signed identity assertion" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${GATEWAY_BUILD_COMMIT}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /src/target/release/gateway /usr/local/bin/gateway
COPY --from=builder --chown=65532:65532 /staging/var/lib/sigv4-gateway /var/lib/sigv4-gateway

USER 65532:65532
WORKDIR /var/lib/sigv4-gateway

# 8443: the gateway (TLS, and the STS at /sts). 9090: the admin listener (/healthz,
# /readyz, /metrics; plain HTTP, keep it private). Bind it to 0.0.0.0:9090 in the config
# (`[admin] addr`) so probes and Prometheus reach it; its default is 127.0.0.1:9090.
EXPOSE 8443 9090

# No shell or curl in this image: the binary probes its own admin listener
# (GET http://127.0.0.1:9090/healthz; exit 0 on 2xx).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/gateway", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/gateway"]
# The default command documents itself: `docker run IMAGE` prints the subcommands.
# Run the gateway with: docker run ... IMAGE run --config /etc/sigv4-gateway/gateway.toml
CMD ["--help"]
