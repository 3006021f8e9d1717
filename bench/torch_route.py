#!/usr/bin/env python3
"""Times torch's own route (every weight byte is read after loading, in both
routes, since from_pretrained may leave tensors mmap-backed) to a bf16 HuggingFace directory against ckptfs:
  torch: dcp_to_torch_save -> torch.load -> .to(bfloat16) -> save_file, then
         from_pretrained of that directory;
  ckptfs: mount -o dtype=bf16 + from_pretrained of the mount;
and from_pretrained from the mount against from a materialised copy.
usage: torch_route.py CKPTFS CKPT ASSETS WORKDIR"""
import gc
import os
import shutil
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
from transformers import AutoModelForCausalLM


def touch(model):
    """Reads every weight byte: from_pretrained may leave tensors mmap-backed."""
    with torch.no_grad():
        return sum(float(p.float().sum()) for p in model.parameters())


def main():
    ckptfs, ckpt, assets, work = sys.argv[1:5]
    out = os.path.join(work, "torch-route")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    pt = os.path.join(work, "full.pt")
    dcp_to_torch_save(ckpt, pt)
    sd = torch.load(pt, weights_only=False)
    os.unlink(pt)
    sd = {k[len("model."):] if k.startswith("model.") else k: v.to(torch.bfloat16).contiguous()
          for k, v in sd.items() if torch.is_tensor(v)}
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    del sd
    gc.collect()
    if assets:
        shutil.copy(os.path.join(assets, "config.json"), out)
    t_convert = time.perf_counter() - t0
    t0 = time.perf_counter()
    m = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16)
    touch(m)
    t_load_copy = time.perf_counter() - t0
    del m
    gc.collect()
    mnt = os.path.join(work, "route-mnt")
    os.makedirs(mnt, exist_ok=True)
    t0 = time.perf_counter()
    subprocess.run([ckptfs, ckpt, mnt, "-o", "dtype=bf16"] + (["-o", f"assets={assets}"] if assets else []),
                   check=True, stderr=subprocess.DEVNULL)
    m = AutoModelForCausalLM.from_pretrained(mnt, dtype=torch.bfloat16)
    touch(m)
    t_mount_load = time.perf_counter() - t0
    del m
    gc.collect()
    subprocess.run(["fusermount3", "-u", mnt], check=False)
    shutil.rmtree(out, ignore_errors=True)
    print(f"  torch route to a bf16 HF dir (dcp_to_torch_save + cast + save): {t_convert:8.2f} s")
    print(f"  from_pretrained of that copy:                                  {t_load_copy:8.2f} s")
    print(f"  torch route total:                                             {t_convert + t_load_copy:8.2f} s")
    print(f"  ckptfs mount -o dtype=bf16 + from_pretrained of the mount:     {t_mount_load:8.2f} s")
    print(f"  ratio torch route / ckptfs:                                    "
          f"{(t_convert + t_load_copy) / t_mount_load:8.1f} x")


if __name__ == "__main__":
    main()
