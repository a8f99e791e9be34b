// Package config is the litefs configuration file: its schema (Config and
// its toml tags), defaults, ${VAR} expansion and checks. The daemon and
// restore share one file, so an init container and the sidecar read the
// same database paths and replica settings.
//
// Parse reads TOML in four steps:
//
//  1. toml.Decode into a generic map: syntax errors, with toml's line.
//  2. A schema walk (the schema is the Config struct and its toml tags) that
//     decodes the map into Config and reports unknown keys (with a "did you
//     mean" for a near miss or a key written in the wrong table), wrong
//     types, bad durations and sizes, explicit zeros where zero is nonsense,
//     and unset environment variables.
//  3. Defaults (the Default* constants; docs/configuration.md lists them).
//  4. Semantic checks: required keys, absolute paths, fuse.dir vs data.dir,
//     db paths inside fuse.dir, replica URLs, one db per replica path.
//
// Every problem is reported, not just the first, one line each:
//
//	FILE:LINE: KEY: PROBLEM; WHAT TO DO
//
// KEY is the full key path with 0-based array indices ("dbs[1].replica.url").
// BurntSushi/toml does not expose key positions, so a small scanner
// (keyLines) finds the line where each key path is first written, tracking
// [table] and [[array]] headers, dotted keys and inline tables. A problem
// about a missing key points at the table it belongs in (line 1 when that
// table is missing too).
//
// Environment variables: ${VAR} and ${VAR:-default} are expanded inside
// string values after parsing (never in keys, comments or non-string
// values), so an expanded value cannot change the TOML structure and line
// numbers stay true. ${VAR} with VAR unset is an error naming VAR; set but
// empty expands to "". ${VAR:-default} gives default when VAR is unset or
// empty (as in sh). Anything else with a $ — a bare $, $VAR, an unclosed ${
// — is literal, so secrets containing $ survive; there is no escape for a
// literal "${NAME}".
//
// Invariants: a *Config that Parse or Read returned is complete (every
// default applied) and valid (Validate on it is nil); no error message
// repeats a secret.
//
// Callers: internal/daemon (litefs mount), internal/restorecmd (restore),
// cmd/litefs (ltx), and the deploy module's tests, which parse the
// Kubernetes ConfigMap with it.
package config
