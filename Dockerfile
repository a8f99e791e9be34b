# syntax=docker/dockerfile:1
#
# One image for the sidecar and the init container: /usr/local/bin/litefs and
# /usr/local/bin/restore on Debian with the fuse3 userspace. `--target myapp`
# builds the example app of docs/kubernetes.md.
#
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=TAG -t REGISTRY/litefs:TAG --push .
#   docker buildx build --platform linux/amd64,linux/arm64 --target myapp -t REGISTRY/myapp:TAG --push .
#
# VERSION (default "dev") is what `litefs version` prints: it reaches the
# binary as -ldflags -X main.Version=$VERSION.
#
# Base images are pinned by tag. In production pin them by digest as well
# (FROM golang:1.26-bookworm@sha256:...) and let a bot bump the digests.
# Builder and runtime must be the same Debian release: the binaries link
# against its glibc (cgo, for go-sqlite3).

# No --platform=$BUILDPLATFORM: go-sqlite3 needs cgo, so each architecture is
# built natively (buildx runs the other one under QEMU) instead of with a C
# cross-compiler. The check fails loudly if someone adds it anyway.
FROM golang:1.26-bookworm AS builder
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    if [ "$(go env GOARCH)" != "$TARGETARCH" ]; then \
        echo "builder is $(go env GOARCH), target is $TARGETARCH: cgo needs a native build (no --platform=\$BUILDPLATFORM)" >&2; exit 1; \
    fi && \
    CGO_ENABLED=1 GOFLAGS="-ldflags=-X=main.Version=$VERSION" make build

# Example app: the counter of the Kubernetes guide.
FROM debian:bookworm-slim AS myapp
COPY --from=builder /src/bin/myapp /usr/local/bin/myapp
EXPOSE 8080
CMD ["myapp", "-addr", ":8080", "-db", "/var/lib/myapp/db"]

# The default (last) target: litefs and restore.
FROM debian:bookworm-slim AS litefs
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates fuse3 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /src/bin/litefs /src/bin/restore /usr/local/bin/
EXPOSE 9090
CMD ["litefs", "mount", "-config", "/etc/litefs.toml"]
