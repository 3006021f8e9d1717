#!/usr/bin/env python3
"""Writes a large DCP checkpoint for the benchmarks with real torch: a
Llama-shaped set of bf16 weights (default about 1.2 GB), DTensor Shard(0) over
2 gloo ranks on CPU, saved with torch.distributed.checkpoint under "model.".
Usage: make_big_ckpt.py OUTDIR [--layers N] [--hidden H]"""
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


def worker(rank, world, port, outdir, layers, hidden):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=600))
    mesh = init_device_mesh("cpu", (world,))
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, shp in shapes(layers, hidden).items():
        t = torch.randn(shp, generator=g, dtype=torch.float32).to(torch.bfloat16)
        sd["model." + name] = distribute_tensor(t, mesh, [Shard(0)])
    dcp.save(sd, checkpoint_id=outdir)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=2048)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(2, port, a.outdir, a.layers, a.hidden), nprocs=2, join=True)


if __name__ == "__main__":
    main()
