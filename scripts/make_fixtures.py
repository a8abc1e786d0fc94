#!/usr/bin/env python3
"""PyTorch reference fixtures for powertrain's tests (tests/fixtures/).

How to run (PyTorch is not a dependency of the crate; install it once, outside the repo):

    python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy safetensors
    /work/venv-torch/bin/python scripts/make_fixtures.py --out tests/fixtures

Deterministic: every tensor comes from a fixed seed and runs on the CPU, single-threaded. Rerun it only when
the protocol changes, and update tests/fixtures/README.md (command, torch version, date) in the same commit.

Files written:
  ops.safetensors              per-op cases, tensors `<case>.<tensor>`; metadata `<case>` = JSON parameters
                               (see OP_CASES below and tests/fixtures/README.md); read by src/ops/*/tests.rs
  pamap2_data.safetensors      x f32 [64, 27, 1, 256] (standard normal), y i64 [64] in 0..12
  pamap2_init.safetensors      state_dict of the pamap2 model, default init, seed 1
  pamap2_sgd_final.safetensors state_dict after 1 epoch, batch 16, no shuffle, SGD lr 0.05 momentum 0.9;
                               metadata "losses" (JSON list of the 4 step losses) and "command"
  celeba_data.safetensors      x f32 [64, 3, 64, 64] (standard normal), y f32 [64, 3] of 0/1
  celeba_init.safetensors      state_dict of the celeba model with K = 3, default init, seed 2
  celeba_adam_final.safetensors  state_dict after 4 steps of Adam lr 1e-3, batch 16, BCE-with-logits (mean);
                               metadata "losses" and "command"

Op references are computed in float64 from the float32 inputs and then rounded to float32 (so they are the
exact PyTorch result up to one float32 rounding); the optimizer and model fixtures run in float32, as
PyTorch trains.
"""

import argparse
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

PROTOCOL_VERSION = 1
SCRIPT = "scripts/make_fixtures.py"


# ---------------------------------------------------------------------------------------------------------
# Models, exactly as shared/docs/protocol.md "Models" defines them.
# ---------------------------------------------------------------------------------------------------------
class Pamap2Net(nn.Module):
    """Input [N, 27, 1, 256] -> logits [N, 12]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(27, 64, (1, 5), padding=(0, 2))
        self.conv2 = nn.Conv2d(64, 64, (1, 5), padding=(0, 2))
        self.conv3 = nn.Conv2d(64, 128, (1, 5), padding=(0, 2))
        self.pool = nn.MaxPool2d((1, 2))
        self.fc1 = nn.Linear(128 * 32, 128)
        self.fc2 = nn.Linear(128, 12)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = torch.flatten(x, 1)  # C-major: [N, 128, 1, 32] -> [N, 4096]
        return self.fc2(F.relu(self.fc1(x)))


class CelebaNet(nn.Module):
    """Input [N, 3, 64, 64] -> logits [N, K]."""

    def __init__(self, k):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(128 * 8 * 8, 256)
        self.fc2 = nn.Linear(256, k)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = self.pool(F.relu(self.conv3(x)))
        x = torch.flatten(x, 1)  # [N, 128, 8, 8] -> [N, 8192]
        return self.fc2(F.relu(self.fc1(x)))


# ---------------------------------------------------------------------------------------------------------
# Op fixtures
# ---------------------------------------------------------------------------------------------------------
def f32(t):
    return t.detach().to(torch.float32).clone().contiguous()  # own storage: save_file rejects shared tensors


def randn(g, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float32)


def leaf64(t):
    """float64 leaf with grad, from the float32 tensor `t` (exact widening)."""
    return t.to(torch.float64).requires_grad_(True)


def conv_case(g, tensors, meta, name, x_shape, w_shape, pad, stride):
    x = randn(g, *x_shape)
    w = randn(g, *w_shape) * 0.3
    b = randn(g, w_shape[0])
    x64, w64, b64 = leaf64(x), leaf64(w), leaf64(b)
    y64 = F.conv2d(x64, w64, None, stride=stride, padding=pad)
    dy = randn(g, *y64.shape)
    dx64, dw64 = torch.autograd.grad(y64, (x64, w64), dy.to(torch.float64))
    # Bias over [n, c_out, h_out*w_out] (bias_forward / bias_backward with inner = h_out * w_out).
    yb64 = y64.detach() + b64.detach().view(1, -1, 1, 1)
    db64 = dy.to(torch.float64).sum(dim=(0, 2, 3))
    tensors.update({
        f"{name}.x": f32(x), f"{name}.w": f32(w), f"{name}.b": f32(b), f"{name}.dy": f32(dy),
        f"{name}.y": f32(y64), f"{name}.y_bias": f32(yb64), f"{name}.dx": f32(dx64), f"{name}.dw": f32(dw64),
        f"{name}.db": f32(db64),
    })
    meta[name] = {"op": "conv2d", "x": list(x_shape), "w": list(w_shape), "pad": list(pad),
                  "stride": list(stride), "y": list(y64.shape),
                  "tensors": "x w b dy -> y (no bias), y_bias = y + b, dx, dw, db = sum(dy)"}


def pool_case(g, tensors, meta, name, kind, x_shape, k):
    x = randn(g, *x_shape)  # continuous: no ties within a window (almost surely)
    x64 = leaf64(x)
    if kind == "max":
        y64, idx = F.max_pool2d(x64, k, stride=k, return_indices=True)
    else:
        y64 = F.avg_pool2d(x64, k, stride=k)
    dy = randn(g, *y64.shape)
    (dx64,) = torch.autograd.grad(y64, (x64,), dy.to(torch.float64))
    tensors.update({f"{name}.x": f32(x), f"{name}.dy": f32(dy), f"{name}.y": f32(y64), f"{name}.dx": f32(dx64)})
    if kind == "max":
        # Flat index into one h*w plane, as Backend::maxpool2d_forward's idx.
        tensors[f"{name}.idx"] = idx.to(torch.int32).contiguous()
    meta[name] = {"op": f"{kind}pool2d", "x": list(x_shape), "kernel": list(k), "stride": list(k),
                  "y": list(y64.shape),
                  "tensors": "x dy -> y, dx" + (", idx (i32, flat index into the h*w plane)" if kind == "max" else "")}


def make_ops(out):
    g = torch.Generator().manual_seed(1234)
    tensors, meta = {}, {}

    conv_case(g, tensors, meta, "conv2d_pamap2", (2, 27, 1, 40), (8, 27, 1, 5), (0, 2), (1, 1))
    conv_case(g, tensors, meta, "conv2d_celeba", (2, 3, 9, 11), (5, 3, 3, 3), (1, 1), (1, 1))
    conv_case(g, tensors, meta, "conv2d_stride2", (1, 4, 7, 9), (3, 4, 3, 3), (1, 1), (2, 2))

    # Odd widths/heights exercise floor mode (the last row/column is dropped).
    pool_case(g, tensors, meta, "maxpool_1x2", "max", (2, 3, 1, 11), (1, 2))
    pool_case(g, tensors, meta, "maxpool_2x2", "max", (2, 3, 7, 9), (2, 2))
    pool_case(g, tensors, meta, "avgpool_1x2", "avg", (2, 3, 1, 11), (1, 2))
    pool_case(g, tensors, meta, "avgpool_2x2", "avg", (2, 3, 7, 9), (2, 2))

    # Linear: y = x W^T + b.
    x, w, b = randn(g, 5, 33), randn(g, 7, 33) * 0.2, randn(g, 7)
    x64, w64, b64 = leaf64(x), leaf64(w), leaf64(b)
    y64 = F.linear(x64, w64, b64)
    dy = randn(g, 5, 7)
    dx64, dw64, db64 = torch.autograd.grad(y64, (x64, w64, b64), dy.to(torch.float64))
    tensors.update({"linear.x": f32(x), "linear.w": f32(w), "linear.b": f32(b), "linear.dy": f32(dy),
                    "linear.y": f32(y64), "linear.dx": f32(dx64), "linear.dw": f32(dw64), "linear.db": f32(db64)})
    meta["linear"] = {"op": "linear", "x": [5, 33], "w": [7, 33], "b": [7],
                      "tensors": "x w b dy -> y = x w^T + b, dx, dw, db"}

    # ReLU; values kept away from 0 so that y > 0 <=> x > 0 is unambiguous.
    x = randn(g, 3, 50)
    x = torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x)
    x64 = leaf64(x)
    y64 = F.relu(x64)
    dy = randn(g, 3, 50)
    (dx64,) = torch.autograd.grad(y64, (x64,), dy.to(torch.float64))
    tensors.update({"relu.x": f32(x), "relu.dy": f32(dy), "relu.y": f32(y64), "relu.dx": f32(dx64)})
    meta["relu"] = {"op": "relu", "x": [3, 50], "tensors": "x dy -> y, dx"}

    # Mean softmax cross-entropy.
    logits = randn(g, 6, 12) * 2.0
    labels = torch.randint(0, 12, (6,), generator=g, dtype=torch.int64)
    l64 = leaf64(logits)
    loss64 = F.cross_entropy(l64, labels, reduction="mean")
    (grad64,) = torch.autograd.grad(loss64, (l64,))
    tensors.update({"cross_entropy.logits": f32(logits), "cross_entropy.labels": labels.contiguous(),
                    "cross_entropy.loss": f32(loss64.reshape(1)), "cross_entropy.grad": f32(grad64)})
    meta["cross_entropy"] = {"op": "cross_entropy", "logits": [6, 12], "reduction": "mean",
                             "tensors": "logits labels(i64) -> loss [1], grad = d(mean loss)/d(logits)"}

    # Mean BCE-with-logits over n*k.
    logits = randn(g, 6, 5) * 3.0
    targets = (torch.rand(6, 5, generator=g) < 0.5).to(torch.float32)
    l64 = leaf64(logits)
    loss64 = F.binary_cross_entropy_with_logits(l64, targets.to(torch.float64), reduction="mean")
    (grad64,) = torch.autograd.grad(loss64, (l64,))
    tensors.update({"bce_logits.logits": f32(logits), "bce_logits.targets": f32(targets),
                    "bce_logits.loss": f32(loss64.reshape(1)), "bce_logits.grad": f32(grad64)})
    meta["bce_logits"] = {"op": "bce_with_logits", "logits": [6, 5], "reduction": "mean",
                          "tensors": "logits targets(0/1 f32) -> loss [1], grad = d(mean loss)/d(logits)"}

    # Optimizers: 3 steps on a [37] tensor with given grads, in float32 as PyTorch trains.
    for name, make_opt, params in [
        ("sgd", lambda p: torch.optim.SGD([p], lr=0.05, momentum=0.9, weight_decay=0.01, foreach=False),
         {"lr": 0.05, "momentum": 0.9, "dampening": 0.0, "nesterov": False, "weight_decay": 0.01}),
        ("adam", lambda p: torch.optim.Adam([p], lr=1e-3, weight_decay=0.01, foreach=False),
         {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01, "amsgrad": False}),
    ]:
        # Weights of scale 0.1 so that Adam's ~1e-3 steps are ~1 % of the weights: a wrong update shows.
        w0 = randn(g, 37) * 0.1
        p = nn.Parameter(w0.clone())
        opt = make_opt(p)
        tensors[f"{name}.w0"] = f32(w0)
        for step in range(1, 4):
            grad = randn(g, 37)
            p.grad = grad.clone()
            opt.step()
            tensors[f"{name}.grad{step}"] = f32(grad)
            tensors[f"{name}.w{step}"] = f32(p)
        meta[name] = dict(op=f"{name}_step", len=37, steps=3,
                          tensors="w0, then per step t = 1..3: grad<t> -> w<t> (weights after step t)", **params)

    metadata = {k: json.dumps(v) for k, v in meta.items()}
    metadata["generator"] = f"{SCRIPT} (torch {torch.__version__})"
    metadata["protocol"] = str(PROTOCOL_VERSION)
    save_file(tensors, os.path.join(out, "ops.safetensors"), metadata=metadata)
    return len(meta)


# ---------------------------------------------------------------------------------------------------------
# Model fixtures
# ---------------------------------------------------------------------------------------------------------
def state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def train(model, opt, loss_fn, x, y, batch):
    """1 epoch, no shuffle: batch i = rows [i*batch, (i+1)*batch). Returns the per-step losses."""
    losses = []
    for i in range(0, x.shape[0], batch):
        opt.zero_grad()
        loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def make_models(out):
    # pamap2: SGD lr 0.05 momentum 0.9, cross-entropy (mean).
    g = torch.Generator().manual_seed(11)
    x = torch.randn(64, 27, 1, 256, generator=g)
    y = torch.randint(0, 12, (64,), generator=g, dtype=torch.int64)
    save_file({"x": x, "y": y}, os.path.join(out, "pamap2_data.safetensors"),
              metadata={"generator": SCRIPT, "protocol": str(PROTOCOL_VERSION)})
    torch.manual_seed(1)
    model = Pamap2Net()
    save_file(state(model), os.path.join(out, "pamap2_init.safetensors"),
              metadata={"generator": f"{SCRIPT}: Pamap2Net(), default init, torch.manual_seed(1)"})
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, foreach=False)
    losses = train(model, opt, F.cross_entropy, x, y, 16)
    cmd = ("powertrain train --model pamap2 --data tests/fixtures/pamap2_data.safetensors "
           "--init tests/fixtures/pamap2_init.safetensors --optimizer sgd --lr 0.05 --momentum 0.9 "
           "--batch-size 16 --epochs 1 --no-shuffle --device cpu --save O.safetensors --out RUN")
    save_file(state(model), os.path.join(out, "pamap2_sgd_final.safetensors"),
              metadata={"losses": json.dumps(losses), "command": cmd, "generator": f"{SCRIPT} (torch {torch.__version__})"})
    print("pamap2 losses", losses)

    # celeba, K = 3: Adam lr 1e-3, BCE-with-logits (mean over batch x K).
    g = torch.Generator().manual_seed(22)
    x = torch.randn(64, 3, 64, 64, generator=g)
    y = (torch.rand(64, 3, generator=g) < 0.5).to(torch.float32)
    save_file({"x": x, "y": y}, os.path.join(out, "celeba_data.safetensors"),
              metadata={"generator": SCRIPT, "protocol": str(PROTOCOL_VERSION)})
    torch.manual_seed(2)
    model = CelebaNet(3)
    save_file(state(model), os.path.join(out, "celeba_init.safetensors"),
              metadata={"generator": f"{SCRIPT}: CelebaNet(3), default init, torch.manual_seed(2)"})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
    losses = train(model, opt, F.binary_cross_entropy_with_logits, x, y, 16)
    cmd = ("powertrain train --model celeba --data tests/fixtures/celeba_data.safetensors "
           "--init tests/fixtures/celeba_init.safetensors --optimizer adam --lr 0.001 "
           "--batch-size 16 --epochs 1 --no-shuffle --device cpu --save O.safetensors --out RUN")
    save_file(state(model), os.path.join(out, "celeba_adam_final.safetensors"),
              metadata={"losses": json.dumps(losses), "command": cmd, "generator": f"{SCRIPT} (torch {torch.__version__})"})
    print("celeba losses", losses)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures", help="output folder (default tests/fixtures)")
    ap.add_argument("--only", choices=["ops", "models", "all"], default="all")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions
    torch.use_deterministic_algorithms(True)
    if a.only in ("ops", "all"):
        print("ops cases:", make_ops(a.out))
    if a.only in ("models", "all"):
        make_models(a.out)


if __name__ == "__main__":
    main()
