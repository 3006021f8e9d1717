"""Load a DCP checkpoint with real torch, independently of ckptfs.

    from torch_ref import load_dcp
    sd = load_dcp("/path/to/ckpt")          # {flat fqn: tensor}
    sd = load_dcp(path, include_bytes=True)  # also non-tensor entries

Supported layouts:
  * FileSystemWriter checkpoints: ``.metadata`` + ``__R_N.distcp`` (any
    extension in torch's default ExtensionRegistry, e.g. zstd, is handled
    by torch's reader);
  * ``use_collectives=False`` checkpoints: no ``.metadata`` but one
    ``__R.metadata`` per rank; torch itself can only reload those with the
    same world size, so the per-rank metadata are merged here;
  * HuggingFaceStorageWriter output: ``*.safetensors`` at the top level,
    either full tensors or shards carrying ``DCP_SHARDING_INFO`` offsets in
    the safetensors ``__metadata__`` (``save_distributed=True``).

Keys are DCP's flattened FQNs as they appear in the metadata (e.g.
``model.layers.0.mlp.up_proj.weight``, ``optim.state.<fqn>.exp_avg``,
``optim.param_groups.0.lr``).
"""

from __future__ import annotations

import glob
import os
import pickle
import re
import tempfile
import warnings
from typing import Any

import torch

__all__ = ["Unsupported", "load_dcp", "load_dcp_via_torch_save", "read_metadata", "detect_layout"]


class Unsupported(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_RANK_MD = re.compile(r"^__(\d+)\.metadata$")


def detect_layout(ckpt_dir: str) -> str:
    """'dcp' | 'dcp-per-rank' | 'hf' ; raises Unsupported otherwise."""
    if os.path.isfile(os.path.join(ckpt_dir, ".metadata")):
        return "dcp"
    if any(_RANK_MD.match(n) for n in os.listdir(ckpt_dir)):
        return "dcp-per-rank"
    if glob.glob(os.path.join(ckpt_dir, "*.safetensors")):
        return "hf"
    raise Unsupported(f"{ckpt_dir}: no .metadata, __N.metadata or *.safetensors")


def _merge_rank_metadata(ckpt_dir: str):
    from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

    files = sorted(
        (int(m.group(1)), n) for n in os.listdir(ckpt_dir) if (m := _RANK_MD.match(n))
    )
    merged: Metadata | None = None
    for _, name in files:
        with open(os.path.join(ckpt_dir, name), "rb") as f:
            md = pickle.load(f)
        if merged is None:
            merged = md
            merged.planner_data = dict(md.planner_data or {})
            merged.storage_data = dict(md.storage_data or {})
            continue
        for fqn, item in md.state_dict_metadata.items():
            cur = merged.state_dict_metadata.get(fqn)
            if cur is None:
                merged.state_dict_metadata[fqn] = item
            elif isinstance(cur, TensorStorageMetadata):
                if not isinstance(item, TensorStorageMetadata) or cur.size != item.size:
                    raise ValueError(f"{fqn}: inconsistent metadata across ranks")
                have = {(tuple(c.offsets), tuple(c.sizes)) for c in cur.chunks}
                for c in item.chunks:
                    if (tuple(c.offsets), tuple(c.sizes)) not in have:
                        cur.chunks.append(c)
        merged.planner_data.update(md.planner_data or {})
        for k, v in (md.storage_data or {}).items():
            merged.storage_data.setdefault(k, v)
    assert merged is not None
    return merged


def read_metadata(ckpt_dir: str):
    """The (merged) torch Metadata object of a checkpoint."""
    layout = detect_layout(ckpt_dir)
    if layout == "dcp":
        from torch.distributed.checkpoint import FileSystemReader

        return FileSystemReader(ckpt_dir).read_metadata()
    if layout == "dcp-per-rank":
        return _merge_rank_metadata(ckpt_dir)
    from torch.distributed.checkpoint import HuggingFaceStorageReader

    return HuggingFaceStorageReader(ckpt_dir).read_metadata()


def _reader(ckpt_dir: str):
    import torch.distributed.checkpoint as dcp

    layout = detect_layout(ckpt_dir)
    if layout == "dcp":
        return dcp.FileSystemReader(ckpt_dir)
    if layout == "dcp-per-rank":

        class _MergedReader(dcp.FileSystemReader):
            def read_metadata(self, *args: Any, **kwargs: Any):
                return _merge_rank_metadata(ckpt_dir)

        return _MergedReader(ckpt_dir)
    R = getattr(dcp, "HuggingFaceStorageReader", None)
    if R is None:
        raise Unsupported("torch has no HuggingFaceStorageReader")
    return R(ckpt_dir)


def _check_coverage(fqn: str, item) -> None:
    """Chunks must lie inside the tensor and (being disjoint in DCP output)
    cover it exactly; otherwise parts of the result would be made up."""
    total = 1
    for d in item.size:
        total *= d
    covered = 0
    seen = set()
    for c in item.chunks:
        key = (tuple(c.offsets), tuple(c.sizes))
        if key in seen:
            continue
        seen.add(key)
        n = 1
        for o, l, d in zip(c.offsets, c.sizes, item.size):
            if o < 0 or l < 0 or o + l > d:
                raise ValueError(f"{fqn}: chunk {key} outside tensor {tuple(item.size)}")
            n *= l
        covered += n
    if covered != total:
        raise ValueError(f"{fqn}: chunks cover {covered} of {total} elements")


def load_dcp(ckpt_dir: str, include_bytes: bool = False) -> dict[str, Any]:
    """Read every entry of the checkpoint into full CPU tensors, keyed by flat FQN."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import BytesStorageMetadata, DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    ckpt_dir = os.fspath(ckpt_dir)
    reader = _reader(ckpt_dir)
    md = reader.read_metadata()
    sd: dict[str, Any] = {}
    for fqn, item in md.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            _check_coverage(fqn, item)
            sd[fqn] = torch.zeros(item.size, dtype=item.properties.dtype)
        elif isinstance(item, BytesStorageMetadata):
            if include_bytes:
                sd[fqn] = None  # replaced by the unpickled object
        else:  # pragma: no cover
            raise Unsupported(f"{fqn}: unknown storage metadata {type(item).__name__}")
    if not sd:
        return sd
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.load(
            sd,
            storage_reader=_reader(ckpt_dir),
            planner=DefaultLoadPlanner(flatten_state_dict=False, flatten_sharded_tensors=False),
            no_dist=True,
        )
    return sd


def load_dcp_via_torch_save(ckpt_dir: str) -> dict[str, Any]:
    """Second, independent path: torch's own dcp_to_torch_save converter
    (FileSystemWriter layout with a global .metadata only), flattened the same
    way DCP flattens state dicts.  Non-tensor entries are included."""
    from torch.distributed.checkpoint._nested_dict import flatten_state_dict
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    if detect_layout(ckpt_dir) != "dcp":
        raise Unsupported("dcp_to_torch_save needs a global .metadata")
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "full.pt")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp_to_torch_save(ckpt_dir, out)
        nested = torch.load(out, weights_only=False)
    flat, _ = flatten_state_dict(nested)
    return flat
