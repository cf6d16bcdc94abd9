# normd: static release binary on a minimal nonroot base.
#
# Build:  DOCKER_BUILDKIT=1 docker build --network host -t normd:0.1.0 .
#         (needs BuildKit for the RUN --mount caches; --network host only so
#         cargo can reach the crate registry. For an offline build, put a
#         `cargo vendor` tree and its .cargo/config.toml into the context.)
#
# Base images are build args so that an air-gapped registry can supply them:
#   BUILDER_IMAGE  Debian bookworm (glibc 2.36) with gcc, libc6-dev (libc.a is
#                  what +crt-static links), make, pkg-config, a Rust toolchain
#                  >= Cargo.toml's rust-version on PATH, CARGO_HOME=/usr/local/cargo
#                  (the layout of the official rust:*-bookworm images, which
#                  also work here), and a CA bundle if crates are downloaded.
#   RUNTIME_IMAGE  anything that has /etc/passwd and /etc/group entries for
#                  65532 (nonroot); no shell or libc is needed, the binary is
#                  static (a distroless "static" nonroot image works too).
# .ci/docker-smoke.sh creates both images locally under the default names.

ARG BUILDER_IMAGE=normd-build-base:bookworm
ARG RUNTIME_IMAGE=normd-runtime-base:nonroot

FROM ${BUILDER_IMAGE} AS build
ARG TARGET=x86_64-unknown-linux-gnu
WORKDIR /src
COPY . .
# Static glibc build (no musl target is available to us): +crt-static links
# libc.a. The release profile (lto=fat, codegen-units=1, strip,
# panic=unwind) comes from Cargo.toml. Caches: the crate registry and the
# target dir survive between builds on the same engine; the binary is copied
# out of the cache mount, then checked to have no interpreter and no NEEDED.
RUN --mount=type=cache,id=normd-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=normd-target,target=/src/target \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target "${TARGET}" --bin normd \
 && install -D -m 0755 "target/${TARGET}/release/normd" /out/normd \
 && readelf --program-headers --dynamic --wide /out/normd > /tmp/elf.txt \
 && if grep -E 'INTERP|NEEDED' /tmp/elf.txt; then echo 'normd is not static' >&2; exit 1; fi \
 && install -d -m 0770 /out/run/normd

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="normd" \
      org.opencontainers.image.description="Localhost sidecar: normalizes, validates and compresses JSON" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/normd /normd
COPY schemas/ /etc/normd/schemas/
# Default socket directory, owned by nonroot so that a fresh named volume
# (docker) inherits it. In Kubernetes an emptyDir is mounted over it.
COPY --from=build --chown=65532:65532 /out/run/normd /run/normd
ENV NORMD_SCHEMAS=/etc/normd/schemas \
    NORMD_SOCKET=/run/normd/normd.sock
USER 65532:65532
ENTRYPOINT ["/normd", "serve"]
