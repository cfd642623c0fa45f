#!/usr/bin/env bash
# Installs the system packages the build and the tests need, when missing
# (Debian/Ubuntu, as root or with sudo): a C++ compiler (the kernel
# emulator), Python with pip (the pinned nvcc and the scripts), and Open MPI
# and MPICH (the MPI interposer's tests; mpi/scripts/install-mpi.sh).
#
#   scripts/install-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Commands the tests need, and the Debian package that provides each.
declare -A NEED=([g++]=g++ [python3]=python3 [pip3]=python3-pip)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
if ((${#missing[@]})); then
  echo "install-deps.sh: installing ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
mpi/scripts/install-mpi.sh
