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


class LearnedEmbedding(nn.Module):
    """sbgm::TimeEmbedding of kind Learned: one row per step, in `table`."""

    def __init__(self, T, dim):
        super().__init__()
        self.table = nn.Embedding(T, dim)

    def forward(self, t):
        return self.table(t)


class MLP(nn.Module):
    """h_l = relu(W_l h_{l-1} + b_l + E_l[t]) for `depth` layers, then a
    linear read-out: sbgm::MLP(MLPOptions(dim).hidden(hidden).depth(depth)
    .num_timesteps(T)) with its learned embedding and ReLU. The parameter
    names are sbgm's (layers.0.weight, embeddings.0.table.weight, out.bias,
    ...), so state_dict() and load_state_dict() exchange weights with
    sbgm::save_model / sbgm::load_model files."""

    def __init__(self, dim=2, hidden=64, depth=3, T=150):
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(dim if i == 0 else hidden, hidden) for i in range(depth)])
        self.embeddings = nn.ModuleList([LearnedEmbedding(T, hidden) for _ in range(depth)])
        self.out = nn.Linear(hidden, dim)

    def forward(self, x, t):
        for layer, emb in zip(self.layers, self.embeddings):
            x = F.relu(layer(x) + emb(t))
        return self.out(x)


class SeedMLP(MLP):
    """The seed's network (sbgm::MLP(MLPOptions(2).num_timesteps(150)))."""

    def __init__(self, T=SEED_T, hidden=SEED_HIDDEN):
        super().__init__(2, hidden, 3, T)


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


# ---------------------------------------------------------------- MNIST

SIGMA = 25.0
MNIST_BATCH = 32
MNIST_SAMPLE_BATCH = 64
MNIST_SAMPLE_STEPS = 500


def ve_std(t):
    return torch.sqrt((SIGMA ** (2 * t) - 1) / (2 * math.log(SIGMA)))


class FourierEmbedding(nn.Module):
    def __init__(self, dim, scale=16.0):
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, t):
        args = t[:, None] * (self.W * (2 * math.pi))[None, :]
        return torch.cat([torch.sin(args), torch.cos(args)], 1)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, tdim, groups=8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_proj = nn.Linear(tdim, cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.skip(x) if self.skip is not None else x)


class Attention(nn.Module):
    def __init__(self, c, groups=8):
        super().__init__()
        self.norm = nn.GroupNorm(groups, c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3, c, h * w)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c), -1)
        out = torch.bmm(v, weights.transpose(1, 2)).reshape(n, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    """The same network as sbgm::UNet(UNetOptions(1)) with marginal_std set:
    channels {16, 32, 64}, one residual block per level, GroupNorm(8), SiLU,
    Fourier time features (128), attention in the middle, stride-2 conv down,
    stride-2 transposed conv up, output divided by the VE std."""

    def __init__(self, cin=1, ch=(16, 32, 64), tdim=128):
        super().__init__()
        # Modules are named as sbgm::UNet registers them (down_block0_0,
        # downsample0, mid1, up_block0_0, upsample0, ...), so its
        # state_dict() matches sbgm's tensor names.
        self.levels = len(ch)
        self.embed = FourierEmbedding(tdim)
        self.time_fc1 = nn.Linear(tdim, tdim)
        self.time_fc2 = nn.Linear(tdim, tdim)
        self.conv_in = nn.Conv2d(cin, ch[0], 3, padding=1)
        prev = ch[0]
        for i, c in enumerate(ch):
            self.add_module(f"down_block{i}_0", ResBlock(prev, c, tdim))
            prev = c
            if i + 1 < len(ch):
                self.add_module(f"downsample{i}", nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid1 = ResBlock(ch[-1], ch[-1], tdim)
        self.mid_attn = Attention(ch[-1])
        self.mid2 = ResBlock(ch[-1], ch[-1], tdim)
        prev = ch[-1]
        for i in reversed(range(len(ch))):
            if i + 1 < len(ch):
                self.add_module(f"upsample{i}",
                                nn.ConvTranspose2d(prev, ch[i], 3, stride=2, padding=1))
                prev = ch[i]
            self.add_module(f"up_block{i}_0", ResBlock(prev + ch[i], ch[i], tdim))
            prev = ch[i]
        self.norm_out = nn.GroupNorm(8, ch[0])
        self.conv_out = nn.Conv2d(ch[0], cin, 3, padding=1)

    def forward(self, x, t):
        emb = self.time_fc2(F.silu(self.time_fc1(self.embed(t))))
        h = self.conv_in(x)
        skips = []
        for i in range(self.levels):
            h = getattr(self, f"down_block{i}_0")(h, emb)
            skips.append(h)
            if i + 1 < self.levels:
                h = getattr(self, f"downsample{i}")(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for k in reversed(range(self.levels)):
            skip = skips[k]
            if k + 1 < self.levels:
                up = getattr(self, f"upsample{k}")
                h = F.conv_transpose2d(h, up.weight, up.bias, stride=2, padding=1,
                                       output_padding=(skip.shape[2] - (2 * h.shape[2] - 1),
                                                       skip.shape[3] - (2 * h.shape[3] - 1)))
            h = getattr(self, f"up_block{k}_0")(torch.cat([h, skip], 1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out / ve_std(t)[:, None, None, None]


def unet_forward_flops(net, x, t):
    try:
        with torch.autograd.profiler.profile(with_flops=True) as prof:
            with torch.no_grad():
                net(x, t)
        return int(sum(e.flops for e in prof.function_events if e.flops))
    except Exception:
        return 0


def mnist_train(iters):
    torch.manual_seed(0)
    net = UNet()
    images = torch.rand(MNIST_BATCH, 1, 28, 28)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    eps = 1e-5

    def step():
        t = torch.rand(MNIST_BATCH) * (1 - eps) + eps
        z = torch.randn_like(images)
        std = ve_std(t)[:, None, None, None]
        score = net(images + std * z, t)
        loss = (score * std + z).square().mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    flops = 3 * unet_forward_flops(net, images, torch.rand(MNIST_BATCH))
    return step, flops, 1


def mnist_sample(iters):
    """One Euler-Maruyama step of the VE SDE (dx = sigma^t dw) for 64 images,
    as the score-SDE tutorial writes it."""
    torch.manual_seed(0)
    net = UNet().eval()
    x = torch.randn(MNIST_SAMPLE_BATCH, 1, 28, 28)
    times = torch.linspace(1.0, 1e-3, MNIST_SAMPLE_STEPS, dtype=torch.float64)
    dt = float(times[0] - times[1])
    state = {"i": 0}

    def step():
        nonlocal x
        i = state["i"]
        state["i"] = (i + 1) % (MNIST_SAMPLE_STEPS - 1)
        with torch.inference_mode():
            tv = float(times[i])
            t = torch.full((MNIST_SAMPLE_BATCH,), tv)
            g2 = SIGMA ** (2 * tv)
            x = x + (g2 * dt) * net(x, t) + math.sqrt(g2 * dt) * torch.randn_like(x)

    flops = unet_forward_flops(net, x, torch.rand(MNIST_SAMPLE_BATCH))
    return step, flops, 1


def mnist_forward(iters):
    torch.manual_seed(0)
    net = UNet().eval()
    x = torch.randn(MNIST_SAMPLE_BATCH, 1, 28, 28)
    t = torch.rand(MNIST_SAMPLE_BATCH)

    def step():
        with torch.inference_mode():
            net(x, t)

    return step, unet_forward_flops(net, x, t), 1


def gemm_peak(iters):
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    c = torch.empty(1024, 1024)

    def step():
        torch.mm(a, b, out=c)

    return step, 2 * 1024 ** 3, 1


WORKLOADS = {"swiss_train": swiss_train, "swiss_sample": swiss_sample,
             "mnist_train": mnist_train, "mnist_sample": mnist_sample,
             "mnist_forward": mnist_forward, "gemm_peak": gemm_peak}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workload", default="all")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = list(WORKLOADS) if args.workload == "all" else args.workload.split(",")
    for name in names:
        default_iters = {"swiss_train": 2000, "swiss_sample": 40,
                         "mnist_train": 30, "mnist_sample": 20, "mnist_forward": 20, "gemm_peak": 20}[name]
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
