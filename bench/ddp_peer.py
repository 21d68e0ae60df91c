#!/usr/bin/env python3
"""PyTorch DDP peer of sbgm-ddp-bench: bench/peer.py's MNIST U-Net training
step (score matching on 32 fixed images, Adam, clip_grad_norm_ at 1) under
torch.nn.parallel.DistributedDataParallel on Gloo when WORLD_SIZE > 1 (env://
rendezvous: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), plain otherwise.

    ddp_peer.py [--steps 60] [--warmup 10] [--batch 32] [--threads 1]

Rank 0 prints: peer=pytorch procs=P batch=B steps=N seconds=S images_per_s=I
"""
import argparse
import os
import sys
import time

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    net = peer.UNet()
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net)  # broadcasts rank 0's weights
    torch.manual_seed(1 + rank)
    images = torch.rand(args.batch, 1, 28, 28)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    eps = 1e-5

    def step():
        t = torch.rand(args.batch) * (1 - eps) + eps
        z = torch.randn_like(images)
        std = peer.ve_std(t)[:, None, None, None]
        score = model(images + std * z, t)
        loss = (score * std + z).square().mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    for _ in range(args.warmup):
        step()
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if world > 1:
        dist.barrier()
    s = time.perf_counter() - t0
    if rank == 0:
        print(f"peer=pytorch procs={world} batch={args.batch} steps={args.steps} "
              f"seconds={s:.3f} images_per_s={world * args.batch * args.steps / s:.1f}",
              flush=True)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
