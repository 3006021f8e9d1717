#!/usr/bin/env python3
"""Writes a large DCP checkpoint for the benchmarks with real torch: a
Llama-shaped set of weights (bf16 by default, about 1.2 GB; --dtype float32
for fp32 master weights), DTensor Shard(0) over --ranks gloo ranks on CPU,
saved with torch.distributed.checkpoint under "model.", plus OUTDIR/../assets/
config.json describing the model so from_pretrained can load the mount.
Usage: make_big_ckpt.py OUTDIR [--layers N] [--hidden H] [--dtype D] [--ranks R]"""
import json
import argparse
import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.multiprocessing as mp
from torch.distributed.tensor import Shard, distribute_tensor
from torch.distributed.device_mesh import init_device_mesh


def shapes(layers, hidden):
    inter = hidden * 11 // 4
    out = {"embed_tokens.weight": (32000, hidden), "norm.weight": (hidden,),
           "lm_head.weight": (32000, hidden)}
    for i in range(layers):
        p = f"layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[p + f"self_attn.{n}.weight"] = (hidden, hidden)
        out[p + "mlp.gate_proj.weight"] = (inter, hidden)
        out[p + "mlp.up_proj.weight"] = (inter, hidden)
        out[p + "mlp.down_proj.weight"] = (hidden, inter)
        out[p + "input_layernorm.weight"] = (hidden,)
        out[p + "post_attention_layernorm.weight"] = (hidden,)
    return out


def worker(rank, world, port, outdir, layers, hidden, dtype):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=600))
    mesh = init_device_mesh("cpu", (world,))
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, shp in shapes(layers, hidden).items():
        t = (torch.randn(shp, generator=g, dtype=torch.float32) * 0.02).to(getattr(torch, dtype))
        sd["model." + name] = distribute_tensor(t, mesh, [Shard(0)])
    dcp.save(sd, checkpoint_id=outdir)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--ranks", type=int, default=2)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(a.ranks, port, a.outdir, a.layers, a.hidden, a.dtype), nprocs=a.ranks,
             join=True)
    assets = os.path.join(os.path.dirname(os.path.abspath(a.outdir)), "assets")
    os.makedirs(assets, exist_ok=True)
    with open(os.path.join(assets, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                   "hidden_size": a.hidden, "intermediate_size": a.hidden * 11 // 4,
                   "num_hidden_layers": a.layers, "num_attention_heads": 16,
                   "num_key_value_heads": 16, "vocab_size": 32000, "rms_norm_eps": 1e-5,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False,
                   "torch_dtype": a.dtype}, f, indent=2)


if __name__ == "__main__":
    main()
