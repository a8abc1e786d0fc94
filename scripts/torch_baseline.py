#!/usr/bin/env python3
"""PyTorch eager baseline: median time of one full training step of the protocol's models.

    python3 scripts/torch_baseline.py --model pamap2|celeba [--k 1] --batch-size B --device cpu|cuda
        [--iters N] [--warmup N] [--threads N] [--tf32 on|off|both] [--json]

Same model, batch and optimiser as `powertrain bench step`: the protocol's pamap2 or celeba CNN
(shared/docs/protocol.md "Models"), random data of the protocol's shapes (x standard normal; class ids for
pamap2, 0/1 targets for celeba with K outputs), Adam lr 1e-3 with the matching loss (mean cross-entropy, or
mean BCE-with-logits). A step is zero_grad, forward, loss, backward, optimizer step; the same batch is reused.
After `--warmup` untimed steps, each of `--iters` steps is timed alone (on cuda: synchronise before reading
the clock on both ends), and the median, p10 and p90 are reported.

On cuda it runs twice by default (`--tf32 both`), as protocol.md "Baselines" asks: mode "fp32" (like for like:
torch.backends.cudnn.allow_tf32 = False, torch.backends.cuda.matmul.allow_tf32 = False) and mode
"torch-default" (PyTorch's defaults as found at start-up: cuDNN convolutions in TF32, matmul in FP32;
the JSON records the flags each run used). On the CPU TF32 does not
apply: one run, mode "fp32".

Needs torch (see scripts/make_fixtures.py for the venv); PyTorch is not a dependency of the crate.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CelebaNet, Pamap2Net  # noqa: E402  (the models, defined once)

# PyTorch's own defaults, read before anything changes them ("torch-default" mode restores these).
DEFAULT_CUDNN_TF32 = torch.backends.cudnn.allow_tf32
DEFAULT_MATMUL_TF32 = torch.backends.cuda.matmul.allow_tf32


def quantile(sorted_xs, q):
    """Linear-interpolated quantile of an ascending list."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def make(model, k, batch, device, seed):
    """Model, optimizer, loss and one random batch of the protocol's shapes."""
    torch.manual_seed(seed)
    if model == "pamap2":
        net = Pamap2Net()
        x = torch.randn(batch, 27, 1, 256)
        y = torch.randint(0, 12, (batch,))
        loss_fn = F.cross_entropy
    else:
        net = CelebaNet(k)
        x = torch.randn(batch, 3, 64, 64)
        y = (torch.rand(batch, k) < 0.5).to(torch.float32)
        loss_fn = F.binary_cross_entropy_with_logits
    net = net.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)  # torch's default implementation choice (foreach on cuda)
    return net, opt, loss_fn, x.to(device), y.to(device)


def time_steps(a, device, mode):
    if device == "cuda":
        fp32 = mode == "fp32"
        torch.backends.cudnn.allow_tf32 = False if fp32 else DEFAULT_CUDNN_TF32
        torch.backends.cuda.matmul.allow_tf32 = False if fp32 else DEFAULT_MATMUL_TF32
    net, opt, loss_fn, x, y = make(a.model, a.k, a.batch_size, device, a.seed)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    sync()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    loss = step().item()
    if loss != loss:  # NaN: the timing would be of a broken run
        raise SystemExit(f"torch_baseline: loss is NaN for {a.model} batch {a.batch_size} ({mode})")
    s = sorted(times)
    return {
        "model": a.model,
        "k": a.k if a.model == "celeba" else None,
        "batch": a.batch_size,
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mode": mode,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if device == "cuda" else None,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32 if device == "cuda" else None,
        "median_ms": statistics.median(times),
        "p10_ms": quantile(s, 0.10),
        "p90_ms": quantile(s, 0.90),
        "iters": a.iters,
        "warmup": a.warmup,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=["pamap2", "celeba"], required=True)
    ap.add_argument("--k", type=int, default=1, help="celeba outputs (default 1)")
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--iters", type=int, default=20, help="timed steps (default 20)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--tf32", choices=["on", "off", "both"], default="both",
                    help="cuda: off = like-for-like FP32, on = PyTorch defaults (cuDNN TF32), both (default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="one JSON object per configuration")
    a = ap.parse_args()
    if a.batch_size < 1 or a.iters < 1 or a.warmup < 0 or a.k < 1:
        ap.error("--batch-size, --iters and --k must be >= 1, --warmup >= 0")
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device (torch.cuda.is_available() is False); use --device cpu")
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    if a.device == "cuda":
        modes = {"off": ["fp32"], "on": ["torch-default"], "both": ["fp32", "torch-default"]}[a.tf32]
    else:
        modes = ["fp32"]
    rows = [time_steps(a, a.device, m) for m in modes]
    if a.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print(f"{'model':8} {'batch':>5} {'device':6} {'mode':14} {'thr':>3} {'median ms':>10} {'p10 ms':>9} "
              f"{'p90 ms':>9} {'iters':>5}  torch")
        for r in rows:
            name = r["model"] + (f"/k{r['k']}" if r["k"] else "")
            print(f"{name:8} {r['batch']:5d} {r['device']:6} {r['mode']:14} {r['threads']:3d} {r['median_ms']:10.2f} "
                  f"{r['p10_ms']:9.2f} {r['p90_ms']:9.2f} {r['iters']:5d}  {r['torch']}")


if __name__ == "__main__":
    main()
