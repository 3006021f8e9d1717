#!/usr/bin/env python3
"""Writes the fixed checkpoint the fuzz-metadata harness reads beside each
fuzzed .metadata (tests/fuzz/data/metadata/) and the matching seed inputs
(tests/fuzz/corpus/metadata/seed-*).  Needs real torch (the test venv):

    python tests/fuzz/make-data.py [FIXTURES]

Data files written by torch, 2 gloo ranks on CPU:
  __0_0.distcp, __1_0.distcp      plain dcp.save: DTensor Shard(0) uneven,
                                  Shard(0) with a zero-size chunk, Shard(1),
                                  Replicate, a transposed int64 (stride (1,5)),
                                  float8/uint16 (_rebuild_tensor_v3), 0-d,
                                  bool, float64, complex64, optimizer entries,
                                  bytes entries
  z/__0_0.distcp, z/__1_0.distcp  the same writer with _extensions=[ZStandard()]
                                  (stream.zstd/1 items), in a subdirectory
and, when the shared fixtures are there, their data files under t113/,
st113/, fsdp1/ and mc10/ (torch 1.13 per-item files, 1.13 ShardedTensor,
Lightning FSDP1 / torch 2.0, Megatron-Core 0.10 TP=1: the mapping rules),
plus a config.json and a tokenizer_config.json found as assets and
Megatron's metadata.json.  Seeds: each .metadata (paths rewritten to those
subdirectories, FRAME opcodes dropped) and one merged .metadata naming
everything.  Small: about 130 KB in all."""
import os
import pickle
import pickletools
import shutil
import socket
import struct
import sys
import tempfile
from datetime import timedelta

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data", "metadata")
SEEDS = os.path.join(HERE, "corpus", "metadata")


# A small Llama-style config: architectures and sizes for the mapping rules
# (megatron-llama, torchtitan-llama), torch_dtype for dtype=auto.
CONFIG = """{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": 4,
  "intermediate_size": 8,
  "num_attention_heads": 2,
  "num_key_value_heads": 1,
  "num_hidden_layers": 2,
  "vocab_size": 5,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16"
}
"""


def worker(rank, world, port, outa, outz):
    import torch
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.checkpoint._extension import ZStandard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=120))
    mesh = init_device_mesh("cpu", (world,))
    ar = lambda n, dt=torch.float32: torch.arange(n, dtype=torch.float32).to(dt)
    sd = {
        "model.w_row": distribute_tensor(ar(20).reshape(5, 4), mesh, [Shard(0)]),
        "model.w_one": distribute_tensor(ar(4, torch.bfloat16).reshape(1, 4), mesh, [Shard(0)]),
        "model.w_col": distribute_tensor(ar(12, torch.float16).reshape(3, 4), mesh, [Shard(1)]),
        "model.w_rep": distribute_tensor(ar(3), mesh, [Replicate()]),
        "model.tr": torch.arange(20, dtype=torch.int64).reshape(4, 5).t(),
        "model.f8": ar(4).to(torch.float8_e4m3fn),
        "model.u16": torch.arange(3, dtype=torch.int32).to(torch.uint16),
        "model.flag": torch.tensor([True, False, True]),
        "model.f64": ar(2, torch.float64),
        "model.cplx": torch.complex(ar(2), ar(2)),
        "model.layers.0.w": ar(6).reshape(2, 3),
        "model.layers.10.w": ar(6).reshape(2, 3) + 1,
        "optim.state.w.step": torch.tensor(3.0),
        "optim.state.w.exp_avg": ar(2),
        "extra": {"epoch": 2, "name": "fuzz"},
    }
    dcp.save(sd, checkpoint_id=outa)
    sdz = {
        "model.z": distribute_tensor(ar(16).reshape(4, 4), mesh, [Shard(0)]),
        "model.zb": ar(6, torch.bfloat16),
        "model.ztr": torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),
    }
    dcp.save(sdz, storage_writer=dcp.FileSystemWriter(outz, _extensions=[ZStandard()]))
    dist.destroy_process_group()


def rewrite(pk, paths):
    """The pickle pk with the strings in paths replaced and FRAMEs dropped."""
    ops = list(pickletools.genops(pk))
    out = bytearray()
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(pk)
        if op.name == "FRAME":
            continue
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8") and arg in paths:
            s = paths[arg].encode()
            out += (b"\x8c" + bytes([len(s)]) if len(s) < 256 else b"X" + struct.pack("<I", len(s))) + s
            continue
        out += pk[pos:end]
    return bytes(out)


def main():
    import torch.multiprocessing as mp

    fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "fixtures")
    tmp = tempfile.mkdtemp()
    outa, outz = os.path.join(tmp, "a"), os.path.join(tmp, "z")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(2, port, outa, outz), nprocs=2, join=True)

    shutil.rmtree(DATA, ignore_errors=True)
    os.makedirs(os.path.join(DATA, "z"))
    os.makedirs(SEEDS, exist_ok=True)
    for n in sorted(os.listdir(outa)):
        if n.endswith(".distcp"):
            shutil.copy(os.path.join(outa, n), DATA)
    zmap = {}
    for n in sorted(os.listdir(outz)):
        if n.endswith(".distcp"):
            shutil.copy(os.path.join(outz, n), os.path.join(DATA, "z"))
            zmap[n] = "z/" + n
    mda = open(os.path.join(outa, ".metadata"), "rb").read()
    mdz = rewrite(open(os.path.join(outz, ".metadata"), "rb").read(), zmap)
    open(os.path.join(SEEDS, "seed-plain"), "wb").write(mda)
    open(os.path.join(SEEDS, "seed-zstd"), "wb").write(mdz)

    # merged: plain + zstd entries in one Metadata (torch's own classes)
    ma, mz = pickle.loads(mda), pickle.loads(mdz)
    ma.state_dict_metadata.update(mz.state_dict_metadata)
    ma.storage_data.update(mz.storage_data)
    open(os.path.join(SEEDS, "seed-merged"), "wb").write(pickle.dumps(ma))

    for sub, fx in (("t113", "torch1.13-per-item-files"), ("st113", "torch1.13-shardedtensor-2ranks"),
                    ("fsdp1", "lightning-fsdp1-torch2.0"), ("mc10", "megatron-core0.10-tp1")):
        src = os.path.join(fixtures, "dcp", fx)
        if not os.path.isdir(src):
            print(f"skipping {fx}: {src} is missing", file=sys.stderr)
            continue
        os.makedirs(os.path.join(DATA, sub))
        paths = {}
        for n in sorted(os.listdir(src)):
            if n.endswith(".distcp"):
                shutil.copy(os.path.join(src, n), os.path.join(DATA, sub))
                os.chmod(os.path.join(DATA, sub, n), 0o644)
                paths[n] = f"{sub}/{n}"
        pk = rewrite(open(os.path.join(src, ".metadata"), "rb").read(), paths)
        open(os.path.join(SEEDS, f"seed-{sub}"), "wb").write(pk)
    # assets found next to the weights: config.json (dtype=auto, mapping
    # parameters, the dtype patch) and a tokenizer file served byte for byte
    with open(os.path.join(DATA, "config.json"), "w") as f:
        f.write(CONFIG)
    # Megatron's marker file: lets the megatron-* mapping rules detect mc10
    mj = os.path.join(fixtures, "dcp", "megatron-core0.10-tp1", "metadata.json")
    if os.path.exists(mj):
        shutil.copy(mj, DATA)
        os.chmod(os.path.join(DATA, "metadata.json"), 0o644)
    with open(os.path.join(DATA, "tokenizer_config.json"), "w") as f:
        f.write('{"model_max_length": 64}\n')
    shutil.rmtree(tmp)
    for root, _, files in sorted(os.walk(DATA)):
        for n in sorted(files):
            p = os.path.join(root, n)
            print(f"{os.path.relpath(p, HERE)}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
