// Package deploy holds litefs' Kubernetes manifests (base/, the
// no-native-sidecar/ overlay, secret.yaml), the Grafana dashboard, and the
// tests that check them and the repository's Dockerfile without a cluster or
// a Docker engine.
//
// It is a module of its own so that the Kubernetes API modules stay out of
// the main module's go.mod. It imports the main module (replace => ../) to
// parse litefs.toml with the daemon's own parser. The root Makefile's
// `make test` runs it with `cd deploy && go test ./...`.
package deploy
