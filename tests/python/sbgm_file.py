"""Reads and writes sbgm model files from Python with nothing but torch and
the standard library: a safetensors file (8-byte little-endian header
length, JSON header, raw little-endian data) whose "__metadata__" holds
sbgm's config (see include/sbgm/model_file.h)."""
import json
import struct
import zlib

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
    "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def load(path):
    """Returns ({name: tensor}, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:end]), dtype=DTYPES[e["dtype"]])
        tensors[name] = t.reshape(e["shape"]).clone()
    return tensors, meta


def save(path, tensors, metadata):
    """Writes {name: tensor} with string metadata; adds sbgm's data_crc32."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().cpu().contiguous().numpy().tobytes() if t.dtype != torch.bfloat16 \
            else t.detach().cpu().contiguous().view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    data = b"".join(chunks)
    meta = dict(metadata)
    meta["data_crc32"] = "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)
    header = {"__metadata__": meta, **header}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def mlp_config(dim, hidden, depth, T, betas, prediction="epsilon"):
    """sbgm's config of an MLP with a learned embedding on a discrete
    schedule (the swiss-roll model)."""
    return {
        "network": {"kind": "mlp", "input_dim": dim, "hidden": hidden, "depth": depth,
                    "embedding": "learned", "embedding_dim": 0, "num_timesteps": T,
                    "fourier_scale": 16.0, "time_scale": 1.0, "activation": "relu"},
        "prediction": prediction,
        "process": {"kind": "discrete", "betas": [float(b) for b in betas], "quantize": True},
        "sample_shape": [dim],
        "data_transform": {"scale": 1.0, "shift": [], "clamp": False,
                           "clamp_min": 0.0, "clamp_max": 1.0},
    }


def save_model(path, module, config, training=None):
    meta = {"format": "sbgm.model", "format_version": "1", "config": json.dumps(config)}
    if training is not None:
        meta["training"] = json.dumps(training)
    save(path, module.state_dict(), meta)
