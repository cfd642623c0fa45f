#!/usr/bin/env python3
"""ptxas resource report: registers, shared memory and spills of every PTX entry.

    scripts/ptxas-report.py [--ptxas PATH] [--arch sm_80,sm_90]

Runs `ptxas -v` on every ptx/*.ptx for each architecture and prints one table
row per (entry, arch). Exits 1 when an entry spills (spill stores or loads
> 0) unless scripts/ptxas-spill-allow.txt names it with a reason.
ptxas comes from --ptxas, else $PTXAS, else next to the pinned nvcc
(scripts/install-nvcc.sh).
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALLOW = ROOT / "scripts" / "ptxas-spill-allow.txt"


def find_ptxas(explicit):
    if explicit:
        return explicit
    if os.environ.get("PTXAS"):
        return os.environ["PTXAS"]
    nvcc = os.environ.get("NVCC") or subprocess.run(
        [str(ROOT / "scripts" / "install-nvcc.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()
    return str(pathlib.Path(nvcc).parent / "ptxas")


def load_allow_list():
    """entry name -> reason; lines are `entry  reason...`, # comments."""
    allow = {}
    if ALLOW.exists():
        for line in ALLOW.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name, _, reason = line.partition(" ")
            if not reason.strip():
                sys.exit(f"{ALLOW}: entry {name} has no reason")
            allow[name] = reason.strip()
    return allow


def parse(output):
    """Parses `ptxas -v` stderr into {entry: {regs, smem, stack, spill_st, spill_ld}}."""
    rows, current = {}, None
    for line in output.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = m.group(1)
            rows[current] = dict(regs=0, smem=0, stack=0, spill_st=0, spill_ld=0)
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            rows[current].update(stack=int(m[1]), spill_st=int(m[2]), spill_ld=int(m[3]))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            rows[current]["regs"] = int(m[1])
        m = re.search(r"(\d+) bytes smem", line)
        if m:
            rows[current]["smem"] = int(m[1])
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ptxas")
    ap.add_argument("--arch", default="sm_80,sm_90")
    args = ap.parse_args()
    ptxas = find_ptxas(args.ptxas)
    allow = load_allow_list()
    archs = args.arch.split(",")
    table, failures = [], []
    for ptx in sorted((ROOT / "ptx").glob("*.ptx")):
        for arch in archs:
            proc = subprocess.run(
                [ptxas, "-v", f"-arch={arch}", str(ptx), "-o", os.devnull], capture_output=True, text=True
            )
            if proc.returncode != 0:
                sys.exit(f"ptxas failed on {ptx.name} for {arch}:\n{proc.stderr}")
            for entry, r in parse(proc.stderr + proc.stdout).items():
                spills = r["spill_st"] + r["spill_ld"]
                note = ""
                if spills:
                    if entry in allow:
                        note = "allowed: " + allow[entry]
                    else:
                        note = "SPILL"
                        failures.append(f"{entry} ({arch})")
                table.append((ptx.stem, entry, arch, r["regs"], r["smem"], r["stack"], r["spill_st"], r["spill_ld"], note))
    header = ("module", "entry", "arch", "regs", "smem B", "stack B", "spill st", "spill ld", "")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)] if table else [len(h) for h in header]
    for row in [header] + table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"{len(table)} entry/arch pairs, {len(failures)} unallowed spill(s)")
    if failures:
        print("spilling entries (fix them or list them in scripts/ptxas-spill-allow.txt with a reason):", ", ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
