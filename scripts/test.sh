#!/usr/bin/env bash
# Runs every test of the workspace on this machine: the README's test command.
#
#   scripts/test.sh
#
# Installs missing system packages first (Debian/Ubuntu, as root or with sudo),
# then builds and runs all unit, integration, doc and bench-smoke tests. GPU
# tests skip with a `MEMWALL-SKIP` line where there is no CUDA driver; set
# MEMWALL_REQUIRE_GPU=1 to make that a failure. No nvcc is needed: the
# committed ptx/ is used after its freshness check.
set -euo pipefail
cd "$(dirname "$0")/.."

# Commands the tests need, and the Debian package that provides each.
declare -A NEED=([g++]=g++ [python3]=python3 [pip3]=python3-pip)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

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
