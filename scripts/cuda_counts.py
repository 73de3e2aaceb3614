"""Kernel launches and copies of one CUDA training step, counted without a GPU.

    NUMBA_ENABLE_CUDASIM=1 python scripts/cuda_counts.py [--model resnet18] [--conv coconv]
                                                         [--batch 128] [--top 15] [--json FILE]

Runs one step (forward, cross-entropy, backward, SGD with momentum, then the loss and the
logits read back, as `train.step.train_step` does) under
`minicoconv.backend.cuda.counters.counting(run_kernels=False)`: every launch and copy is
the real step's, no kernel runs, so a batch-128 step is counted in seconds under the
simulator. The first step makes the momentum buffers, so a second step is counted too;
the numbers printed are the second's. On a GPU machine it counts the same way (cuBLAS
GEMMs are then not launches of ours).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import minicoconv as mc
from minicoconv import models
from minicoconv.backend.cuda.counters import counting
from minicoconv.nn import functional as F
from minicoconv.optim import SGD


def count_step(model_name: str, conv: str, batch: int):
    mc.manual_seed(0)
    model = models.build(model_name, conv=conv, experts=4).to("cuda")
    model.train()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 100, batch)
    result = []
    for _ in range(2):
        with counting(run_kernels=False) as c:
            images = mc.Tensor(x, device="cuda")             # the batch upload
            logits = model(images)
            loss = F.cross_entropy(logits, labels)           # labels uploaded here
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item(), logits.numpy()                      # what train_step reads back
        result.append(c)
    return result[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--conv", default="coconv")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--json")
    args = p.parse_args()
    c = count_step(args.model, args.conv, args.batch)
    print(f"{args.model}-{args.conv} batch {args.batch}, one training step: {c.launches} kernel launches, "
          f"{c.host_to_device} host-to-device and {c.device_to_host} device-to-host copies, "
          f"{c.device_to_device} device-to-device copies, {c.host_args} NumPy kernel arguments")
    for name, n in c.by_kernel.most_common(args.top):
        print(f"  {n:5d}  {name}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"launches": c.launches, "by_kernel": dict(c.by_kernel), "host_to_device": c.host_to_device,
                       "device_to_host": c.device_to_host, "device_to_device": c.device_to_device,
                       "host_args": c.host_args}, f, indent=1)


if __name__ == "__main__":
    main()
