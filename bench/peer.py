"""The Python PyTorch side of sbgm's benchmarks: the same workloads as
sbgm-bench, written from the same definitions (see bench/README.md), so that
bench/compare_pytorch.sh can time both in one run.

Prints one line per workload in sbgm-bench's format:
  peer=pytorch workload=NAME threads=K iters=N us_per_step=... flops=... gflops=...
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- 2-D seed

SEED_T = 150  # the seed's schedule: T = 150 sigmoid betas 1e-5 -> 5e-3
SEED_HIDDEN = 64


def sigmoid_betas(T, start, end):
    return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (end - start) + start


class SeedMLP(nn.Module):
    """h_l = relu(W_l h_{l-1} + b_l + E_l[t]) for 3 layers, then a linear
    read-out: the seed's network (sbgm::MLP(MLPOptions(2).num_timesteps(150)))."""

    def __init__(self, T=SEED_T, hidden=SEED_HIDDEN):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(2, hidden), nn.Linear(hidden, hidden),
                                     nn.Linear(hidden, hidden)])
        self.embeddings = nn.ModuleList([nn.Embedding(T, hidden) for _ in range(3)])
        self.out = nn.Linear(hidden, 2)

    def forward(self, x, t):
        for layer, emb in zip(self.layers, self.embeddings):
            x = F.relu(layer(x) + emb(t))
        return self.out(x)


def mlp_forward_flops(batch, hidden=SEED_HIDDEN, dim=2, depth=3):
    macs = dim * hidden + (depth - 1) * hidden * hidden + hidden * dim
    return 2 * batch * macs


def swiss_roll(n, gen):
    # scikit-learn's make_swiss_roll, x and z columns, divided by 10, noise 0.1
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=gen, dtype=torch.float64))
    x = t * torch.cos(t)
    z = t * torch.sin(t)
    pts = torch.stack([x, z], 1) + 0.1 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return (pts / 10).float()


def swiss_train(iters):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    data = swiss_roll(10000, gen)
    betas = sigmoid_betas(SEED_T, 1e-5, 5e-3)
    abar = torch.cumprod(1 - betas, 0)
    sqrt_ab = abar.sqrt().float()
    sqrt_1mab = (1 - abar).sqrt().float()
    model = SeedMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = 128

    def step():
        idx = torch.randint(0, data.size(0), (batch,))
        x0 = data[idx]
        half = torch.randint(0, SEED_T, (batch // 2,))
        t = torch.cat([half, SEED_T - 1 - half])
        e = torch.randn_like(x0)
        xt = x0 * sqrt_ab[t].unsqueeze(1) + e * sqrt_1mab[t].unsqueeze(1)
        loss = (e - model(xt, t)).square().mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step, 3 * mlp_forward_flops(batch), 1


def swiss_sample(iters):
    """DDPM ancestral sampling of 1,000 points over the seed's 150 steps, as
    the seed's loop writes it (with sigma_t^2 = beta_t); one call is the whole
    chain, reported per step."""
    torch.manual_seed(0)
    betas = sigmoid_betas(SEED_T, 1e-5, 5e-3)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    coef_eps = (betas / (1 - abar).sqrt()).tolist()
    inv_sqrt_alpha = (1 / alphas.sqrt()).tolist()
    sigma = betas.sqrt().tolist()
    model = SeedMLP()
    n = 1000

    def step():
        with torch.inference_mode():
            x = torch.randn(n, 2)
            for i in reversed(range(SEED_T)):
                t = torch.full((n,), i, dtype=torch.long)
                eps = model(x, t)
                x = (x - coef_eps[i] * eps) * inv_sqrt_alpha[i]
                if i > 0:
                    x = x + sigma[i] * torch.randn_like(x)
        return x

    return step, mlp_forward_flops(n), SEED_T


WORKLOADS = {"swiss_train": swiss_train, "swiss_sample": swiss_sample}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", default="all")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = list(WORKLOADS) if args.workload == "all" else args.workload.split(",")
    for name in names:
        default_iters = {"swiss_train": 2000, "swiss_sample": 40}.get(name, 50)
        iters = args.iters or default_iters
        step, flops, per_call = WORKLOADS[name](iters)
        for _ in range(max(10, iters // 10)):
            step()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        us = statistics.median(times) * 1e6 / per_call
        print(f"peer=pytorch workload={name} threads={args.threads} iters={iters} "
              f"us_per_step={us:.1f} flops={flops} gflops={flops / us / 1e3:.3f}", flush=True)


if __name__ == "__main__":
    main()
