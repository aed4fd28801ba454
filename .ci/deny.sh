#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licences, banned crates,
# duplicate versions (warnings only) and sources. Installs cargo-deny from
# crates.io when missing.
#
# Not advisories: the RustSec database is a git repository on GitHub, which
# these machines cannot reach, and no package registry they reach ships a copy
# (docs/reliability.md, "Supply chain"). Where GitHub is reachable, run
# `cargo deny check advisories` as well.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$CARGO_DENY_VERSION"; then
  echo "installing cargo-deny $CARGO_DENY_VERSION"
  cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi

cargo deny --locked check --hide-inclusion-graph licenses bans sources
