#!/usr/bin/env bash
# Installs what the memwall-mpi tests need: Open MPI 4.1 (Debian's
# openmpi-bin + libopenmpi-dev: mpicc, mpirun, mpi.h), the default, and
# MPICH 4.0 (mpich + libmpich-dev), the second target, side by side: Debian
# keeps Open MPI behind the plain `mpicc`/`mpirun` names (update-alternatives)
# and MPICH reachable as `mpicc.mpich`/`mpirun.mpich`. Idempotent: installs
# only what is missing. Debian/Ubuntu, as root or with sudo.
#
#   mpi/scripts/install-mpi.sh            # both
#   MEMWALL_MPICH=0 mpi/scripts/install-mpi.sh   # Open MPI only
#
# Build and test against MPICH with
#   MPICC=mpicc.mpich MPIRUN=mpirun.mpich cargo test -p memwall-mpi
set -euo pipefail

pkgs=()
if ! command -v mpicc >/dev/null 2>&1 || ! command -v mpirun >/dev/null 2>&1; then
  pkgs+=(openmpi-bin libopenmpi-dev binutils)
fi
if [[ ${MEMWALL_MPICH:-1} != 0 ]] && ! command -v mpicc.mpich >/dev/null 2>&1; then
  pkgs+=(mpich libmpich-dev)
fi
((${#pkgs[@]})) || exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-mpi.sh: no apt-get; install an MPI (mpicc, mpirun) by hand" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -ne 0 ]] && sudo=sudo
echo "install-mpi.sh: installing ${pkgs[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
command -v mpicc >/dev/null && command -v mpirun >/dev/null
# Installing MPICH after Open MPI must not take the plain names over.
if command -v update-alternatives >/dev/null 2>&1 && [[ -x /usr/bin/mpicc.openmpi ]]; then
  $sudo update-alternatives --set mpi /usr/bin/mpicc.openmpi >/dev/null 2>&1 || true
  $sudo update-alternatives --set mpirun /usr/bin/mpirun.openmpi >/dev/null 2>&1 || true
fi
