"""The Python side of sbgm's interop tests (tests/python_interop_test.cpp).

  interop.py check-cpp MODEL X.npy T.npy OUT.npy
      loads an sbgm model file written by C++ into bench/peer.py's MLP or
      UNet with load_state_dict(strict=True) and checks that its outputs on
      (X, T) match OUT (C++'s) to 1e-6.
  interop.py make-torch MODEL X.npy T.npy OUT.npy
      trains a swiss-roll MLP in PyTorch, saves it as an sbgm model file and
      writes fixed inputs and its outputs on them for C++ to compare.
"""
import json
import os
import sys
import time
import zlib

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
import peer  # noqa: E402
import sbgm_file  # noqa: E402

TOL = 1e-6


def check_cpp(model_path, x_path, t_path, out_path):
    tensors, meta = sbgm_file.load(model_path)
    assert meta["format"] == "sbgm.model", meta.get("format")
    with open(model_path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    crc = "%08x" % (zlib.crc32(raw[8 + n:]) & 0xFFFFFFFF)
    assert crc == meta["data_crc32"], (crc, meta["data_crc32"])
    # header_crc32 (format version 2, model_file.h): every other metadata
    # entry and the tensor table, as compact JSON with sorted keys.
    header = json.loads(raw[8:8 + n])
    rest = {k: v for k, v in header["__metadata__"].items() if k != "header_crc32"}
    dtypes = {"F32": "Float", "F64": "Double", "I64": "Long"}
    table = [[k, dtypes[v["dtype"]], v["shape"]] for k, v in
             sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                    key=lambda kv: kv[1]["data_offsets"][0])]
    text = json.dumps({"metadata": rest, "tensors": table}, separators=(",", ":"),
                      sort_keys=True, ensure_ascii=False)
    hcrc = "%08x" % (zlib.crc32(text.encode()) & 0xFFFFFFFF)
    assert hcrc == meta["header_crc32"], (hcrc, meta["header_crc32"])
    cfg = json.loads(meta["config"])
    net = cfg["network"]
    if net["name"] == "mlp":
        assert net["embedding"] == "learned" and net["activation"] == "relu", net
        model = peer.MLP(net["input_dim"], net["hidden"], net["depth"], net["num_timesteps"])
    else:  # peer.UNet: one block per level, no level attention, VE sigma = 25
        assert net["name"] == "unet" and net["num_res_blocks"] == 1, net
        assert net["groups"] == 8 and not net["attention_levels"], net
        assert net["mid_attention"] and net["time_embedding"] == "fourier", net
        assert net["divide_by_sigma"] and cfg["process"] == {"name": "ve", "sigma": peer.SIGMA}
        model = peer.UNet(net["in_channels"], tuple(net["channels"]), net["time_dim"])
    sampling = {k: v for k, v in tensors.items() if not k.startswith("raw.")}
    model.load_state_dict(sampling, strict=True)
    x = torch.from_numpy(np.load(x_path))
    t = torch.from_numpy(np.load(t_path))
    ref = torch.from_numpy(np.load(out_path))
    with torch.no_grad():
        y = model(x, t)
    diff = (y - ref).abs().max().item()
    print(f"PyTorch loaded {len(sampling)} tensors of a {net['name']}; "
          f"max |pytorch - sbgm| = {diff:.3g} on {x.shape[0]} inputs")
    return 0 if diff <= TOL else 1


def make_torch(model_path, x_path, t_path, out_path):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    T, hidden, depth = 200, 64, 3
    betas = peer.sigmoid_betas(T, 1e-4, 0.06)
    abar = torch.cumprod(1 - betas, 0)
    sqrt_ab, sqrt_1mab = abar.sqrt().float(), (1 - abar).sqrt().float()
    gen = torch.Generator().manual_seed(0)
    data = peer.swiss_roll(10000, gen)
    data = (data - data.mean(0)) / data.std()
    model = peer.MLP(2, hidden, depth, T)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    steps, start = 300, time.time()
    for _ in range(steps):
        x0 = data[torch.randint(0, data.size(0), (256,))]
        t = torch.randint(0, T, (256,))
        e = torch.randn_like(x0)
        xt = x0 * sqrt_ab[t, None] + e * sqrt_1mab[t, None]
        loss = (e - model(xt, t)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.time() - start
    config = sbgm_file.mlp_config(2, hidden, depth, T, betas.tolist())
    sbgm_file.save_model(model_path, model, config,
                         {"step": steps, "train_seconds": seconds, "final_loss": loss.item()})
    x = torch.randn(64, 2)
    t = torch.randint(0, T, (64,))
    with torch.no_grad():
        y = model(x, t)
    np.save(x_path, x.numpy())
    np.save(t_path, t.numpy())
    np.save(out_path, y.numpy())
    print(f"PyTorch trained {steps} steps in {seconds:.2f} s, final loss {loss.item():.4f}")
    return 0


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    sys.exit({"check-cpp": check_cpp, "make-torch": make_torch}[cmd](*args))
