#!/usr/bin/env python3
"""Gradient fixtures for the whole-model parity tests, and the conditioning evidence for Adam.

    /work/venv-torch/bin/python scripts/make_grad_fixtures.py   (from the repo root; needs torch, safetensors)

Writes tests/fixtures/{pamap2,celeba}_grads_step1.safetensors: the gradient of every parameter at the first
step of the model fixtures of scripts/make_fixtures.py (same data, same init, first batch of 16 rows), computed
in float64 by PyTorch from the float32 inputs (an exact reference for the float32 engine).

It also prints how far PyTorch's OWN float32 run of the celeba Adam fixture lands from the same run in float64
(rel. L2 per tensor after 4 steps): Adam divides by sqrt(v), so gradients that are zero up to rounding get
updates of +-lr whose sign is noise. That spread (up to ~1e-2 on fc1.bias) is why the celeba Adam weights are
compared at 1e-2 while its gradients and losses are compared tightly.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CelebaNet, Pamap2Net  # noqa: E402

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def step1_grads(make_net, name, loss_fn, dtype):
    d = load_file(os.path.join(FIX, f"{name}_data.safetensors"))
    init = load_file(os.path.join(FIX, f"{name}_init.safetensors"))
    net = make_net().to(dtype)
    net.load_state_dict({k: v.to(dtype) for k, v in init.items()})
    x = d["x"][:16].to(dtype)
    y = d["y"][:16]
    y = y if y.dtype == torch.int64 else y.to(dtype)
    loss = loss_fn(net(x), y)
    loss.backward()
    return loss.item(), {k: p.grad.detach().double() for k, p in net.named_parameters()}


def grads(make_net, name, loss_fn):
    """float64 reference gradients, plus PyTorch's own float32 error against them (rel. L2 per tensor):
    max-pooling after ReLU routes a gradient by an argmax that rounding can flip, so float32 itself is only
    this close to the exact answer; the Rust test allows twice PyTorch's own error (and at least 1e-4)."""
    loss, ref = step1_grads(make_net, name, loss_fn, torch.float64)
    _, g32 = step1_grads(make_net, name, loss_fn, torch.float32)
    err32 = {k: ((g32[k] - ref[k]).norm() / ref[k].norm()).item() for k in ref}
    out = {k: v.float().contiguous() for k, v in ref.items()}
    save_file(out, os.path.join(FIX, f"{name}_grads_step1.safetensors"),
              metadata={"loss": json.dumps(loss), "torch_f32_rel_l2": json.dumps(err32),
                        "generator": f"scripts/make_grad_fixtures.py (torch {torch.__version__}, float64)"})
    print(name, "step-1 loss", loss, "torch float32 rel. L2 errors", err32)


def adam_spread():
    d = load_file(os.path.join(FIX, "celeba_data.safetensors"))
    init = load_file(os.path.join(FIX, "celeba_init.safetensors"))

    def run(dtype):
        m = CelebaNet(3).to(dtype)
        m.load_state_dict({k: v.to(dtype) for k, v in init.items()})
        opt = torch.optim.Adam(m.parameters(), lr=1e-3, foreach=False)
        x, y = d["x"].to(dtype), d["y"].to(dtype)
        for i in range(4):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(m(x[i * 16:(i + 1) * 16]), y[i * 16:(i + 1) * 16]).backward()
            opt.step()
        return {k: v.detach().double() for k, v in m.state_dict().items()}

    a, b = run(torch.float64), run(torch.float32)
    for k in sorted(a):
        print(f"celeba adam, torch float32 vs float64 after 4 steps: {k:12s} rel. L2 {((b[k] - a[k]).norm() / a[k].norm()).item():.3e}")


if __name__ == "__main__":
    torch.manual_seed(0)
    grads(Pamap2Net, "pamap2", F.cross_entropy)
    grads(lambda: CelebaNet(3), "celeba", F.binary_cross_entropy_with_logits)
    adam_spread()
