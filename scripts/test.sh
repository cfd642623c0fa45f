#!/usr/bin/env bash
# Runs every test of the workspace on this machine: the README's test command.
#
#   scripts/test.sh
#
# Installs missing system packages first (scripts/install-deps.sh: g++,
# python3-pip, Open MPI and MPICH; Debian/Ubuntu, as root or with sudo), then builds and
# runs all unit, integration, doc and bench-smoke tests and the examples. GPU
# tests skip with a `MEMWALL-SKIP` line where there is no CUDA driver; set
# MEMWALL_REQUIRE_GPU=1 to make that a failure. MPI tests are required (the
# script installs Open MPI and MPICH; they run under both). No nvcc is needed: the committed ptx/ is used
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

# The interposer again, built against and run under MPICH (the second MPI;
# install-mpi.sh installs it beside Open MPI). Only memwall-mpi rebuilds.
if command -v mpicc.mpich >/dev/null 2>&1 && command -v mpirun.mpich >/dev/null 2>&1; then
  echo "memwall-mpi under MPICH:"
  MPICC=mpicc.mpich MPIRUN=mpirun.mpich cargo test -p memwall-mpi --all-targets --locked
elif [[ $MEMWALL_REQUIRE_MPI == 1 && ${MEMWALL_MPICH:-1} != 0 ]]; then
  echo "test.sh: MPICH (mpicc.mpich, mpirun.mpich) missing; mpi/scripts/install-mpi.sh installs it" >&2
  exit 1
fi

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
