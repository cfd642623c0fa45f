#!/usr/bin/env bash
# Installs CUDA 13.0's nvcc from PyPI into a cache folder and prints the path
# of the nvcc binary on stdout (progress goes to stderr).
#
#   NVCC=$(scripts/install-nvcc.sh)
#
# Every package is pinned to 13.0.x: an unpinned nvidia-nvvm pulls a newer
# release whose cicc does not match this nvcc. The folder is reused when it
# already holds this exact set. MEMWALL_CACHE overrides ~/.cache/memwall.
set -euo pipefail

PACKAGES=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96
)
cache=${MEMWALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/memwall}
dest=$cache/nvcc-13.0.88
stamp=$dest/.memwall-packages
nvcc=$dest/nvidia/cu13/bin/nvcc

if [[ -x $nvcc && -f $stamp && "$(cat "$stamp")" == "${PACKAGES[*]}" ]]; then
  echo "$nvcc"
  exit 0
fi

python=$(command -v python3 || command -v python || true)
if [[ -z $python ]]; then
  echo "install-nvcc: python3 with pip is needed to fetch nvcc from PyPI" >&2
  exit 1
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "install-nvcc: $python has no pip; install python3-pip" >&2
  exit 1
fi

echo "install-nvcc: installing ${PACKAGES[*]} into $dest" >&2
rm -rf "$dest.tmp"
mkdir -p "$cache"
"$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
  --target "$dest.tmp" "${PACKAGES[@]}" >&2
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "${PACKAGES[*]}" >"$stamp"
"$nvcc" --version >&2
echo "$nvcc"
