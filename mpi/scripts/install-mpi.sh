#!/usr/bin/env bash
# Installs what the memwall-mpi tests need: Open MPI 4.1 (Debian's
# openmpi-bin + libopenmpi-dev: mpicc, mpirun, mpi.h). Idempotent: does
# nothing when mpicc and mpirun are already there. Debian/Ubuntu, as root or
# with sudo.
#
#   mpi/scripts/install-mpi.sh
#
# MPICH (the second target) instead: apt-get install mpich libmpich-dev,
# after removing the Open MPI packages (both provide mpicc/mpirun through
# update-alternatives). Set MPICC if the wrapper is not on PATH.
set -euo pipefail

if command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-mpi.sh: no apt-get; install an MPI (mpicc, mpirun) by hand" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo
echo "install-mpi.sh: installing openmpi-bin libopenmpi-dev" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
  openmpi-bin libopenmpi-dev binutils >/dev/null
command -v mpicc >/dev/null && command -v mpirun >/dev/null
