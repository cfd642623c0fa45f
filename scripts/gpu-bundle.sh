#!/usr/bin/env bash
# Builds every test and bench binary of the workspace into target/gpu-bundle/,
# with a runner, so a machine that has CUDA but no Rust runs the whole GPU
# suite in one command:
#
#   scripts/gpu-bundle.sh                       # here: build (x86-64, release, stripped)
#   target/gpu-bundle/run.sh [--no-bench]       # there, from the repository root
#
# The runner sets MEMWALL_REQUIRE_GPU=1 (a missing driver fails instead of
# skipping), runs every test binary, compute-sanitizer (memcheck) over the
# GPU tests when it is installed, then the benches, and prints a summary table.
# Ship it with the device tool's `carry: ["target/gpu-bundle"]`.
set -euo pipefail
cd "$(dirname "$0")/.."

bundle=target/gpu-bundle
rm -rf "$bundle"
mkdir -p "$bundle/tests" "$bundle/benches" "$bundle/bin" "$bundle/examples"
export CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_BENCH_DEBUG=0

collect() { # reads cargo's JSON messages; prints "kind name path" per executable
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        t = m["target"]
        kind = t["kind"][0]
        if kind in ("lib", "rlib", "cdylib"):
            kind = "lib"
        if kind != "bench" and not m["profile"].get("test"):
            continue  # a plain binary built for integration tests, not a test harness
        name = t["name"] + "_lib" if kind == "lib" else t["name"]
        # package_id looks like "path+file:///.../tiers#memwall-tiers@0.1.0":
        # prefix the targets of other packages so names cannot collide.
        pkg = m["package_id"].split("#")[-1].split("@")[0]
        if kind != "lib" and pkg != "memwall":
            name = pkg.replace("memwall-", "") + "-" + name
        print(kind, name, m["executable"])
'
}

echo "gpu-bundle: building test binaries" >&2
cargo test --workspace --all-targets --release --no-run --locked --message-format=json | collect |
  while read -r kind name path; do
    if [[ $kind == bench || $kind == example ]]; then continue; fi # benches: built below; examples: CPU demos
    # The carry to a GPU machine is limited to 64 MiB: CPU-only test
    # binaries stay home (CI runs them): the tier and MPI crates' tests
    # other than their GPU ones, their unit tests, and the emulator's.
    if [[ ($name == tiers-* || $name == mpi-*) && $name != *gpu* ]]; then continue; fi
    if [[ $name == emu_* || $name == memwall_tiers_lib || $name == memwall_mpi_lib ]]; then continue; fi
    if [[ $kind == bin ]]; then name="bin_$name"; fi
    cp "$path" "$bundle/tests/$name"
  done
echo "gpu-bundle: building bench binaries" >&2
cargo bench --workspace --no-run --locked --message-format=json | collect |
  while read -r kind name path; do
    # The emulator's bench is CPU-only.
    if [[ $kind == bench && $name != mpi-* && $name != emulator ]]; then cp "$path" "$bundle/benches/$name"; fi
  done
cargo build --release --locked --bin memwall
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cp "$target_dir/release/memwall" "$bundle/bin/memwall"
# The README's GPU examples (examples/*_gpu.rs), run by run.sh beside the tests.
cargo build --release --locked -p memwall --examples
for ex in "$target_dir"/release/examples/*_gpu; do
  if [[ -x $ex ]]; then cp "$ex" "$bundle/examples/"; fi
done
strip "$bundle"/tests/* "$bundle"/benches/* "$bundle"/bin/* "$bundle"/examples/* 2>/dev/null || true
cp scripts/gpu-suite-run.sh "$bundle/run.sh"
chmod +x "$bundle/run.sh"
du -sh "$bundle" >&2
ls "$bundle"/tests "$bundle"/benches >&2
