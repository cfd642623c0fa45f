#!/usr/bin/env bash
# The interposer benchmark: MPI_Pack and a 3-D halo exchange with and
# without libmemwall_mpi.so over block sizes, printed as speedup tables.
# Installs Open MPI first if needed (install-mpi.sh).
#
#   mpi/scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
mpi/scripts/install-mpi.sh
exec cargo bench -p memwall-mpi --bench interposer
