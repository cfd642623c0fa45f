#!/usr/bin/env bash
# The GPU suite runner, copied into target/gpu-bundle/run.sh by
# scripts/gpu-bundle.sh. Run it from the repository root of a machine with a
# CUDA driver; it needs no Rust toolchain.
#
#   target/gpu-bundle/run.sh [--no-bench] [--no-sanitizer] [--out DIR]
#
# Prints a table: one row per binary with passed / failed / skipped counts.
# Exit status 1 when any test failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=1 sanitizer=1 out=${OUT:-$here/logs}
while (($#)); do
  case $1 in
    --no-bench) bench=0 ;;
    --no-sanitizer) sanitizer=0 ;;
    --out) out=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
export MEMWALL_REQUIRE_GPU=${MEMWALL_REQUIRE_GPU:-1}
export RUST_BACKTRACE=1
export MEMWALL_BIN=$here/bin/memwall # tests that run the CLI use this copy

"$here/bin/memwall" info | tee "$out/info.txt"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee -a "$out/info.txt"

rows=()
failed_any=0
count() { # log pattern -> sum of the numbers before it on "test result:" lines
  grep -E '^test result:' "$1" | grep -oE "[0-9]+ $2" | awk '{s+=$1} END {print s+0}'
}
for bin in "$here"/tests/*; do
  name=$(basename "$bin")
  log=$out/test-$name.log
  start=$(date +%s.%N)
  "$bin" --test-threads=1 >"$log" 2>&1
  rc=$?
  secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b-a}')
  passed=$(count "$log" passed) failed=$(count "$log" failed)
  skipped=$(grep -o 'MEMWALL-SKIP' "$log" | wc -l)
  status=ok
  if ((rc != 0)); then status="FAIL(rc=$rc)"; failed_any=1; fi
  rows+=("$(printf '%-28s %7s %7s %8s %8s  %s' "$name" "$passed" "$failed" "$skipped" "$secs" "$status")")
done

for bin in "$here"/examples/*; do # the README's GPU examples: each checks itself
  [[ -e $bin ]] || continue
  name=example:$(basename "$bin")
  log=$out/$name.log
  "$bin" >"$log" 2>&1
  rc=$?
  status=ok
  if ((rc != 0)); then status="FAIL(rc=$rc)"; failed_any=1; fi
  rows+=("$(printf '%-28s %7s %7s %8s %8s  %s' "$name" - - "$(grep -c MEMWALL-SKIP "$log")" - "$status")")
done

if ((sanitizer)) && command -v compute-sanitizer >/dev/null; then
  for bin in "$here"/tests/gpu_*; do
    [[ -e $bin ]] || continue
    name=sanitize:$(basename "$bin")
    log=$out/$name.log
    compute-sanitizer --tool memcheck --error-exitcode 9 "$bin" --test-threads=1 >"$log" 2>&1
    rc=$?
    errs=$(grep -oE 'ERROR SUMMARY: [0-9]+' "$log" | awk '{s+=$3} END {print s+0}')
    status=ok
    if ((rc != 0)); then status="FAIL(rc=$rc, $errs sanitizer errors)"; failed_any=1; fi
    rows+=("$(printf '%-28s %7s %7s %8s %8s  %s' "$name" "$(count "$log" passed)" "$(count "$log" failed)" - - "$status")")
  done
fi

echo
printf '%-28s %7s %7s %8s %8s  %s\n' binary passed failed skipped seconds status
printf '%s\n' "${rows[@]}"

if ((bench)); then
  echo
  echo "benches (criterion, short runs; full logs in $out):"
  for bin in "$here"/benches/*; do
    name=$(basename "$bin")
    "$bin" --bench --warm-up-time 1 --measurement-time 3 >"$out/bench-$name.log" 2>&1 || failed_any=1
    # "group/id  time: [..]  thrpt: [lo mid hi]" -> one line per benchmark
    awk '/^[A-Za-z0-9_\/.-]+ *$/ {id=$1} /time:/ && id=="" {id=$1} /thrpt:/ {print "  " id "  " $0; id=""}' \
      "$out/bench-$name.log"
  done
fi
if ((bench)) && [[ -d scripts/bench ]]; then
  echo
  echo "PyTorch on this GPU, same shapes (scripts/bench/*.py):"
  for py in scripts/bench/*.py; do
    echo "--- $py"
    python3 "$py" 2>&1 | tee "$out/torch-$(basename "$py" .py).log"
  done
fi
exit $failed_any
