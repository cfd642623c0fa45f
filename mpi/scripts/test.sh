#!/usr/bin/env bash
# The interposer's tests with MPI required (skips become failures):
# installs Open MPI if needed, then runs memwall-mpi's unit tests, the
# mpirun tests (-np 2 and -np 4, with and without the interposer) and the
# benchmark's smoke run.
#
#   mpi/scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mpi/scripts/install-mpi.sh
MEMWALL_REQUIRE_MPI=1 exec cargo test -p memwall-mpi --all-targets
