#!/usr/bin/env python3
"""Compare two safetensors checkpoints tensor by tensor: rel. L2 error of GOT against EXPECTED.

    python3 scripts/compare_weights.py GOT.safetensors EXPECTED.safetensors [--tol 1e-3]

Prints one line per tensor and exits 1 if any error exceeds --tol. Needs numpy and safetensors.
"""
import argparse
import sys

import numpy as np
from safetensors.numpy import load_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("got")
    ap.add_argument("expected")
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    got, exp = load_file(a.got), load_file(a.expected)
    worst = 0.0
    for name in sorted(exp):
        e = exp[name].astype(np.float64)
        g = got[name].astype(np.float64)
        err = float(np.linalg.norm(g - e) / max(np.linalg.norm(e), 1e-30))
        worst = max(worst, err)
        print(f"{name:14s} rel. L2 error {err:.3e}")
    print(f"worst {worst:.3e} (tolerance {a.tol:g}): {'PASS' if worst < a.tol else 'FAIL'}")
    sys.exit(0 if worst < a.tol else 1)


if __name__ == "__main__":
    main()
