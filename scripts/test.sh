#!/usr/bin/env bash
# Runs every test of the workspace on this machine: the README's test command.
#
#   scripts/test.sh
#
# Installs missing system packages first (scripts/install-deps.sh: g++,
# python3-pip, Open MPI; Debian/Ubuntu, as root or with sudo), then builds and
# runs all unit, integration, doc and bench-smoke tests and the examples. GPU
# tests skip with a `MEMWALL-SKIP` line where there is no CUDA driver; set
# MEMWALL_REQUIRE_GPU=1 to make that a failure. MPI tests are required (the
# script installs Open MPI). No nvcc is needed: the committed ptx/ is used
# after its freshness check.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

# MPI was installed above, so the interposer's mpirun tests must run.
export MEMWALL_REQUIRE_MPI=${MEMWALL_REQUIRE_MPI:-1}
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

# Every example (the README's snippets) runs to completion and checks itself.
for ex in examples/*.rs; do
  name=$(basename "$ex" .rs)
  echo "example $name:"
  cargo run -q -p memwall --locked --features emu --example "$name"
done
for ex in tiers/examples/*.rs; do
  name=$(basename "$ex" .rs)
  echo "example tiers/$name:"
  cargo run -q -p memwall-tiers --locked --example "$name"
done
