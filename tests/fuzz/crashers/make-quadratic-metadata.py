#!/usr/bin/env python3
"""make-quadratic-metadata.py OUT N - writes a .metadata (needs torch) with one
float32 tensor [1, N] split into N column chunks of [1, 1] and no storage
data.  ckptfs spends time quadratic in N before it refuses it (add_chunk's
duplicate search and check_coverage's overlap sweep, src/catalog.c): N=40000
(1.5 MB) takes 12 s, N=80000 (3 MB) 49 s.  Usage:
    python make-quadratic-metadata.py DIR/.metadata 40000 && time ckptfs inspect DIR"""
import pickle, sys, torch
from torch.distributed.checkpoint.metadata import (Metadata, TensorStorageMetadata, TensorProperties,
                                                   ChunkStorageMetadata)
n = int(sys.argv[2])
chunks = [ChunkStorageMetadata(offsets=torch.Size([0, i]), sizes=torch.Size([1, 1])) for i in range(n)]
md = Metadata(state_dict_metadata={"w": TensorStorageMetadata(
    properties=TensorProperties(dtype=torch.float32), size=torch.Size([1, n]), chunks=chunks)},
    storage_data={})
open(sys.argv[1], "wb").write(pickle.dumps(md))
