#!/usr/bin/env bash
# Regenerates ptx/*.ptx and ptx/manifest from kernels/ with the pinned nvcc.
#
#   scripts/regen-ptx.sh          rewrite ptx/ and ptx/manifest
#   scripts/regen-ptx.sh --check  compile into a temp folder; fail if ptx/ differs
#
# nvcc comes from $NVCC, else scripts/install-nvcc.sh (pinned CUDA 13.0 from PyPI).
# The flags are those in kernels/nvcc.flags, the same that build.rs uses.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
[[ ${1:-} == --check ]] && check=1

nvcc=${NVCC:-$(scripts/install-nvcc.sh)}
version=$("$nvcc" --version | sed -n 's/.*, V\([0-9.]*\)$/\1/p')
mapfile -t flags < <(grep -v '^[[:space:]]*#' kernels/nvcc.flags | sed '/^[[:space:]]*$/d')

out=ptx
if ((check)); then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

shopt -s nullglob
kernels=(kernels/*.cu)
for cu in "${kernels[@]}"; do
  stem=$(basename "$cu" .cu)
  "$nvcc" "${flags[@]}" "$cu" -o "$out/$stem.ptx"
done

{
  echo "# memwall PTX manifest: which sources and which nvcc produced ptx/."
  echo "# Written by scripts/regen-ptx.sh; checked by build.rs and tests/ptx_manifest.rs."
  echo "nvcc $version"
  find kernels -path kernels/emu -prune -o -type f -print | LC_ALL=C sort | while read -r f; do
    echo "source $(sha256sum "$f" | cut -d' ' -f1) $f"
  done
  for cu in "${kernels[@]}"; do
    stem=$(basename "$cu" .cu)
    echo "ptx $(sha256sum "$out/$stem.ptx" | cut -d' ' -f1) ptx/$stem.ptx"
  done
} >"$out/manifest"

if ((check)); then
  if diff -r -q ptx "$out" >/dev/null; then
    echo "regen-ptx: ptx/ matches a fresh compile with nvcc $version"
  else
    echo "regen-ptx: ptx/ differs from a fresh compile with nvcc $version:" >&2
    diff -r -q ptx "$out" >&2 || true
    echo "run scripts/regen-ptx.sh and commit ptx/" >&2
    exit 1
  fi
else
  # Drop PTX whose source is gone.
  for ptx in ptx/*.ptx; do
    [[ -f kernels/$(basename "$ptx" .ptx).cu ]] || rm -f "$ptx"
  done
  echo "regen-ptx: wrote ${#kernels[@]} module(s) to ptx/ with nvcc $version"
fi
