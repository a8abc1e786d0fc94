#!/usr/bin/env python3
"""Closure of a metered run per block of time, and the kernels worth calibrating (used by scripts/gpu-validate.sh).

usage: closure_blocks.py RUN [BLOCK_S]         per BLOCK_S-second block (default 2): the steps' energy, their
                                                implied mean power, and where the records carry the twin's ground
                                                truth (true_energy_j, --energy sim) the closure steps / truth
       closure_blocks.py --top-kernels RUN FRAC the kernels holding >= FRAC of kernels.csv's energy, comma-separated

The last line is the summary: blocks, the spread of the blocks' implied power (a block below the run's idle power
shows energy attributed to the wrong block), and the worst block closure against the truth where it is known.
On a GPU the counter's value at each block edge is not in the run directory, so there the per-block closure is
against the truth only on sim; on nvml the line shows the implied power per block (TODO: the counter at block
edges in steps.jsonl for a per-block closure on hardware).
"""
import csv
import json
import sys


def top_kernels(run, frac):
    with open(f"{run}/kernels.csv") as f:
        rows = [r for r in csv.DictReader(f) if not r["name"].startswith("(")]
    energy = lambda r: float(r.get("energy_j") or 0.0)
    total = sum(energy(r) for r in rows)
    names = [r["name"] for r in rows if total > 0 and energy(r) >= frac * total]
    print(",".join(names) if names else ",".join(r["name"] for r in sorted(rows, key=energy)[-3:]))


def blocks(run, block_s):
    with open(f"{run}/summary.json") as f:
        summary = json.load(f)
    idle = summary.get("idle_power_w")
    b = {}
    with open(f"{run}/steps.jsonl") as f:
        for line in f:
            r = json.loads(line)
            t, e = r.get("t_s"), r.get("energy_j")
            if t is None or e is None:
                continue
            k = int(t // block_s)
            acc = b.setdefault(k, [0.0, 0.0, 0.0, True])
            acc[0] += e
            acc[1] += r.get("window_s") or 0.0
            if r.get("true_energy_j") is None:
                acc[3] = False
            else:
                acc[2] += r["true_energy_j"]
    if not b:
        print(f"no step energies in {run}/steps.jsonl (source {summary.get('energy_source')})")
        return
    powers, closures = [], []
    for k in sorted(b):
        e, w, truth, has_truth = b[k]
        p = e / w if w > 0 else float("nan")
        powers.append(p)
        c = e / truth if has_truth and truth > 0 else None
        if c is not None:
            closures.append(c)
        print(f"block {k * block_s:7.1f} s  {e:10.3f} J  {p:8.1f} W" + (f"  closure {c:.4f}" if c else ""))
    line = f"{len(b)} blocks of {block_s:g} s: implied power {min(powers):.1f}..{max(powers):.1f} W"
    if idle:
        low = sum(1 for p in powers if p < idle)
        line += f" (idle {idle:.1f} W; {low} block(s) below idle)"
    if closures:
        worst = max(closures, key=lambda c: abs(c - 1.0))
        line += f"; closure vs truth worst {100 * (worst - 1):+.2f} %"
    else:
        line += "; no ground truth in the records (closure per block needs --energy sim)"
    print(line)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "--top-kernels":
        top_kernels(a[1], float(a[2]))
    elif len(a) in (1, 2) and not a[0].startswith("-"):
        blocks(a[0], float(a[1]) if len(a) == 2 else 2.0)
    else:
        sys.exit(__doc__)
