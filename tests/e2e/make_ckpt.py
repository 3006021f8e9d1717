#!/usr/bin/env python3
"""Write small PyTorch Distributed Checkpoints (DCP) for the ckptfs e2e suite.

Usage:
    python make_ckpt.py CASE OUTDIR [--hf-out HFDIR]
    python make_ckpt.py --list

Importable:
    from make_ckpt import CASES, make, Unsupported
    info = make("llama-fp32", outdir, hf_out=refdir)

Everything runs on CPU with the real installed torch; models are tiny
``transformers`` models built from a config with random init (seed 0, no
downloads).  Multi-rank cases run under ``torch.multiprocessing`` (forkserver
with torch/transformers preloaded; CKPTFS_MP_START=spawn to change) with
the gloo backend on 127.0.0.1 and are bounded by timeouts so they cannot hang.

When HFDIR is given it receives the reference the checkpoint must reproduce:

    HFDIR/config.json     model.config.save_pretrained()
    HFDIR/reference.pt    torch.save({hf_name: tensor}) - the model's own
                          state_dict() (for optimizer cases: the weights
                          *after* the optimizer step, i.e. what was saved)
    HFDIR/logits.pt       logits on torch.arange(16).reshape(2, 8) % vocab_size
                          of a model built like from_pretrained() builds it
                          (_from_config(config, dtype=...)) with
                          reference.pt loaded: from_pretrained() on a
                          correct export reproduces it bit for bit (the
                          bf16 cases differ from model.to(bf16) itself,
                          which also casts the fp32 rotary buffers)
    HFDIR/case.json       description: dcp_prefix (prefix the model keys carry
                          inside the checkpoint: "" or "model."), world size,
                          dtype, layout, torch/transformers versions, notes

The names in reference.pt are the names ckptfs is expected to expose with its
default naming rules (drop optimizer/optim/lr_scheduler/dataloader/train_state
entries and ``_extra_state`` keys, strip one shared top-level component), i.e.
the model's state_dict() keys.  Note: they are transformers-v5 in-memory names;
for MoE models v5 uses fused expert tensors (``mlp.experts.gate_up_proj``),
which ``from_pretrained`` accepts directly (``save_pretrained`` would rewrite
them to per-expert legacy names).  Tied models list both
``model.embed_tokens.weight`` and ``lm_head.weight`` (same storage).

Cases the installed torch cannot produce raise :class:`Unsupported`.

Multi-rank cases start their ranks with multiprocessing's forkserver, which
(like spawn) re-imports the caller's ``__main__``: a script that calls
make() must use the ``if __name__ == "__main__":`` guard (pytest and this
CLI are fine; ``python - <<EOF`` scripts are not).  Environment knobs:
CKPTFS_MP_START=spawn, CKPTFS_MAKE_CKPT_TIMEOUT (s, default 180),
CKPTFS_MAKE_CKPT_NO_FSDP2=1 (use the DTensor fallback instead of fully_shard).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import inspect
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any, Callable


def _cap_onednn_isa() -> None:
    """Work around SIGILL in oneDNN's AMX bf16 kernels on VMs that advertise
    amx_* in /proc/cpuinfo (and grant ARCH_REQ_XCOMP_PERM) but fault on the
    tile instructions: any bf16 matmul then kills the process ("Illegal
    instruction", exit 132).  Must run before the first oneDNN primitive is
    created; inherited by spawned ranks.  Set ONEDNN_MAX_CPU_ISA yourself
    (e.g. to ALL) to override."""
    if "ONEDNN_MAX_CPU_ISA" in os.environ or "DNNL_MAX_CPU_ISA" in os.environ:
        return
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read(65536)
    except OSError:
        return
    if "amx_tile" in flags:
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"


_cap_onednn_isa()

import torch  # noqa: E402

__all__ = ["Unsupported", "Case", "CASES", "make", "build_model", "fixed_input"]

# Seconds allowed for one multi-rank case (all ranks together) and for the
# process-group collectives inside it.
CASE_TIMEOUT_S = float(os.environ.get("CKPTFS_MAKE_CKPT_TIMEOUT", "180"))
PG_TIMEOUT_S = 60


class Unsupported(Exception):
    """The installed torch/transformers cannot produce this case."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------
# models

_DIMS = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=128,
    max_position_embeddings=64,
)


def _cfg_llama(**kw):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM, LlamaConfig(**{**_DIMS, **kw})


def _cfg_qwen2(**kw):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM, Qwen2Config(**{**_DIMS, "tie_word_embeddings": False, **kw})


def _cfg_qwen3(**kw):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM, Qwen3Config(
        **{**_DIMS, "head_dim": 16, "tie_word_embeddings": False, **kw}
    )


def _cfg_qwen3moe(**kw):
    try:
        from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
    except ImportError:
        Qwen3MoeConfig = None
    if Qwen3MoeConfig is not None:
        return Qwen3MoeForCausalLM, Qwen3MoeConfig(
            **{
                **_DIMS,
                "head_dim": 16,
                "moe_intermediate_size": 32,
                "num_experts": 4,
                "num_experts_per_tok": 2,
                "decoder_sparse_step": 1,
                "mlp_only_layers": [],
                "tie_word_embeddings": False,
                **kw,
            }
        )
    try:
        from transformers import MixtralConfig, MixtralForCausalLM
    except ImportError as e:  # pragma: no cover
        raise Unsupported(f"neither Qwen3Moe nor Mixtral in transformers: {e}")
    return MixtralForCausalLM, MixtralConfig(
        **{**_DIMS, "num_local_experts": 4, "num_experts_per_tok": 2, **kw}
    )


def _cfg_mistral(**kw):
    from transformers import MistralConfig, MistralForCausalLM

    return MistralForCausalLM, MistralConfig(**{**_DIMS, "tie_word_embeddings": False, **kw})


def _cfg_mixtral(**kw):
    try:
        from transformers import MixtralConfig, MixtralForCausalLM
    except ImportError as e:  # pragma: no cover
        raise Unsupported(f"Mixtral not in transformers: {e}")
    return MixtralForCausalLM, MixtralConfig(
        **{**_DIMS, "num_local_experts": 4, "num_experts_per_tok": 2, "tie_word_embeddings": False, **kw}
    )


def _cfg_uneven(**kw):
    # Qwen3 (explicit head_dim) with sizes not divisible by 2 or 4:
    # vocab 129, hidden 66, intermediate 130, q_proj 66 rows, k/v_proj 6 rows,
    # q_norm/k_norm 6 elements -> with 4 ranks Shard(0) gives 2,2,2,0
    # (a zero-size chunk on the last rank).
    return _cfg_qwen3(
        hidden_size=66,
        intermediate_size=130,
        num_attention_heads=11,
        num_key_value_heads=1,
        head_dim=6,
        vocab_size=129,
        **kw,
    )


MODELS: dict[str, Callable[..., Any]] = {
    "llama": _cfg_llama,
    "llama-tied": lambda: _cfg_llama(tie_word_embeddings=True),
    "qwen2": _cfg_qwen2,
    "qwen3": _cfg_qwen3,
    "qwen3moe": _cfg_qwen3moe,
    "mistral": _cfg_mistral,
    "mixtral": _cfg_mixtral,
    "uneven": _cfg_uneven,
}


def build_model(kind: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """Build the seeded tiny model ``kind``; returns (model, config)."""
    cls, cfg = MODELS[kind]()
    torch.manual_seed(seed)
    model = cls(cfg)
    if dtype != torch.float32:
        model = model.to(dtype)
    model.eval()
    return model, model.config


def fixed_input(vocab_size: int) -> torch.Tensor:
    return torch.arange(16).reshape(2, 8) % vocab_size


@torch.no_grad()
def model_logits(model) -> torch.Tensor:
    ids = fixed_input(model.config.vocab_size)
    return model(input_ids=ids).logits.detach().cpu()


# --------------------------------------------------------------------------
# case table


@dataclasses.dataclass
class Case:
    name: str
    model: str  # key of MODELS
    world: int  # 1 = single process, no process group
    dtype: torch.dtype = torch.float32
    layout: str = "plain"  # see _save_* below
    prefix: str = ""  # prefix of model keys inside the checkpoint
    writer: str = "fs"  # fs | zstd | perfile | nocollective | hf-sharded | hf-consolidated
    notes: str = ""


CASES: dict[str, Case] = {
    c.name: c
    for c in [
        Case("llama-fp32", "llama", 1),
        Case("llama-bf16", "llama", 1, dtype=torch.bfloat16),
        Case("llama-tied", "llama-tied", 1, notes="tie_word_embeddings=True; lm_head.weight and "
             "model.embed_tokens.weight share storage"),
        Case("qwen2-fp32", "qwen2", 1),
        Case("qwen3-bf16", "qwen3", 1, dtype=torch.bfloat16),
        Case("qwen3moe-fp32", "qwen3moe", 1),
        Case("llama-zstd", "llama", 1, writer="zstd"),
        Case("llama-perfile", "llama", 1, writer="perfile",
             notes="FileSystemWriter(single_file_per_rank=False): one .distcp per tensor"),
        Case("llama-dtensor-shard0-2", "llama", 2, layout="shard0", prefix="model."),
        Case("llama-dtensor-shard0-4", "llama", 4, layout="shard0", prefix="model."),
        Case("llama-fsdp2-optim-2", "llama", 2, layout="fsdp2-optim", prefix="model."),
        Case("llama-shard1-2", "llama", 2, layout="shard1"),
        Case("llama-2d-4", "llama", 4, layout="2d", prefix="model."),
        Case("uneven-2", "uneven", 2, layout="shard0", prefix="model."),
        Case("uneven-4", "uneven", 4, layout="shard0", prefix="model."),
        Case("titan-2", "llama", 2, layout="titan"),
        Case("llama-nocollective-2", "llama", 2, layout="shard0-repl1d", writer="nocollective",
             notes="use_collectives=False: per-rank __N.metadata, no global .metadata; "
             "1-D tensors replicated so every rank writes its own copy"),
        Case("llama-hf-sharded-2", "llama", 2, layout="shard0", writer="hf-sharded"),
        Case("llama-hf-sharded-2-consolidated", "llama", 2, layout="shard0", writer="hf-consolidated"),
    ]
}


# --------------------------------------------------------------------------
# feature checks (run in the parent, before any process is spawned)


def _check_supported(case: Case) -> None:
    import torch.distributed.checkpoint as dcp

    if case.writer == "zstd":
        try:
            from torch.distributed.checkpoint._extension import ZStandard
        except ImportError as e:
            raise Unsupported(f"torch.distributed.checkpoint._extension.ZStandard missing: {e}")
        if not ZStandard.is_available():
            raise Unsupported("ZStandard extension present but no zstandard/pyzstd module")
        if "_extensions" not in inspect.signature(dcp.FileSystemWriter.__init__).parameters:
            raise Unsupported("FileSystemWriter has no _extensions parameter")
    if case.writer == "nocollective":
        if "use_collectives" not in inspect.signature(dcp.save).parameters:
            raise Unsupported("dcp.save has no use_collectives parameter")
    if case.writer in ("hf-sharded", "hf-consolidated"):
        W = getattr(dcp, "HuggingFaceStorageWriter", None)
        if W is None:
            raise Unsupported("torch.distributed.checkpoint.HuggingFaceStorageWriter missing")
        params = inspect.signature(W.__init__).parameters
        if "save_distributed" not in params:
            raise Unsupported("HuggingFaceStorageWriter has no save_distributed parameter")
        if case.writer == "hf-consolidated" and "enable_consolidation" not in params:
            raise Unsupported("HuggingFaceStorageWriter has no enable_consolidation parameter")
        try:
            import safetensors  # noqa: F401
        except ImportError as e:
            raise Unsupported(f"safetensors not installed: {e}")
    if case.world > 1:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_gloo_available():
            raise Unsupported("torch.distributed with gloo is not available")
        try:
            from torch.distributed.tensor import distribute_tensor  # noqa: F401
        except ImportError as e:
            raise Unsupported(f"torch.distributed.tensor (DTensor) missing: {e}")
    if case.layout in ("fsdp2-optim", "titan"):
        try:
            from torch.distributed.checkpoint.state_dict import get_state_dict  # noqa: F401
        except ImportError as e:
            raise Unsupported(f"torch.distributed.checkpoint.state_dict missing: {e}")


# --------------------------------------------------------------------------
# reference output


def _write_reference(case: Case, hf_out: str | None, model, ref_sd: dict, extra: dict) -> None:
    if not hf_out:
        return
    import transformers

    os.makedirs(hf_out, exist_ok=True)
    ref_sd = {k: v.detach().clone().contiguous() for k, v in ref_sd.items()}
    config = copy.deepcopy(model.config)
    if hasattr(config, "dtype") or not hasattr(config, "torch_dtype"):
        config.dtype = case.dtype  # transformers v5 name; written as "dtype"
    else:  # pragma: no cover - transformers v4
        config.torch_dtype = case.dtype
    config.save_pretrained(hf_out)
    torch.save(ref_sd, os.path.join(hf_out, "reference.pt"))
    # Logits from a model instantiated the way from_pretrained() does it
    # (dtype given at construction -> rotary inv_freq buffers stay fp32,
    # whereas model.to(bf16) also casts them), so a checkpoint loaded with
    # AutoModelForCausalLM.from_pretrained reproduces logits.pt bit for bit.
    cls = MODELS[case.model]()[0]  # not type(model): fully_shard swaps the class
    try:
        loader_model = cls._from_config(config, dtype=case.dtype)
    except TypeError:  # pragma: no cover - older transformers: torch_dtype=
        loader_model = cls._from_config(config, torch_dtype=case.dtype)
    loader_model.load_state_dict(ref_sd, strict=True)
    loader_model.eval()
    torch.save(model_logits(loader_model), os.path.join(hf_out, "logits.pt"))
    desc = {
        "case": case.name,
        "model": case.model,
        "model_class": cls.__name__,
        "world_size": case.world,
        "dtype": str(case.dtype).replace("torch.", ""),
        "layout": case.layout,
        "writer": case.writer,
        "dcp_prefix": case.prefix,
        "notes": case.notes,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "fixed_input": "torch.arange(16).reshape(2, 8) % vocab_size",
        **extra,
    }
    with open(os.path.join(hf_out, "case.json"), "w") as f:
        json.dump(desc, f, indent=2, sort_keys=True)
        f.write("\n")


# --------------------------------------------------------------------------
# single process


def _fs_writer(case: Case, outdir: str):
    import torch.distributed.checkpoint as dcp

    if case.writer == "zstd":
        from torch.distributed.checkpoint._extension import ZStandard

        return dcp.FileSystemWriter(outdir, _extensions=[ZStandard()])
    if case.writer == "perfile":
        return dcp.FileSystemWriter(outdir, single_file_per_rank=False)
    return dcp.FileSystemWriter(outdir)


def _make_single(case: Case, outdir: str, hf_out: str | None) -> dict:
    import torch.distributed.checkpoint as dcp

    model, _ = build_model(case.model, case.dtype)
    sd = model.state_dict()
    to_save = {"model": sd} if case.prefix == "model." else dict(sd)
    kw = {}
    if "no_dist" in inspect.signature(dcp.save).parameters:
        kw["no_dist"] = True  # explicit; also implied when no process group exists
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "assuming the intent is to save in a single process"
        dcp.save(to_save, storage_writer=_fs_writer(case, outdir), **kw)
    _write_reference(case, hf_out, model, sd, {})
    return {}


# --------------------------------------------------------------------------
# multi process


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _placements_for(layout: str, t: torch.Tensor, mesh_ndim: int):
    from torch.distributed.tensor import Replicate, Shard

    if layout == "shard0":
        return [Shard(0)]
    if layout == "shard0-repl1d":
        return [Shard(0)] if t.dim() >= 2 else [Replicate()]
    if layout == "shard1":
        return [Shard(1)] if t.dim() >= 2 else [Replicate()]
    if layout == "2d":
        return [Shard(0), Shard(1)] if t.dim() >= 2 else [Shard(0), Replicate()]
    raise ValueError(layout)


def _distributed_sd(layout: str, sd: dict, mesh) -> dict:
    from torch.distributed.tensor import distribute_tensor

    out = {}
    for k, v in sd.items():
        out[k] = distribute_tensor(v.detach(), mesh, _placements_for(layout, v, mesh.ndim))
    return out


def _one_step(model):
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = fixed_input(model.config.vocab_size)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    model.eval()
    return opt


def _trained_state_dicts(case: Case, world: int, flat_optim: bool):
    """One AdamW step under FSDP2 (fully_shard on a CPU/gloo mesh), then
    get_state_dict(model, optimizer).  Returns (model, msd, osd, how).

    Fallback when fully_shard does not work on CPU with the installed torch
    (or CKPTFS_MAKE_CKPT_NO_FSDP2=1): take the step on the plain model (every
    rank computes the same thing) and distribute the state dicts as DTensor
    Shard(0) - the same on-disk layout FSDP2 produces."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    opts = StateDictOptions(flatten_optimizer_state_dict=flat_optim)
    if os.environ.get("CKPTFS_MAKE_CKPT_NO_FSDP2") != "1":
        try:
            from torch.distributed.fsdp import fully_shard

            model, _ = build_model(case.model, case.dtype)
            for layer in model.model.layers:
                fully_shard(layer, mesh=mesh)
            fully_shard(model, mesh=mesh)
            opt = _one_step(model)
            msd, osd = get_state_dict(model, opt, options=opts)
            return model, msd, osd, "fully_shard"
        except Exception as e:  # pragma: no cover - torch without CPU FSDP2
            how = f"dtensor-fallback ({type(e).__name__}: {e})"
    else:
        how = "dtensor-fallback (CKPTFS_MAKE_CKPT_NO_FSDP2=1)"

    model, _ = build_model(case.model, case.dtype)
    opt = _one_step(model)
    msd, osd = get_state_dict(model, opt, options=opts)

    def shard(v):
        if isinstance(v, torch.Tensor) and not isinstance(v, DTensor) and v.dim() >= 1:
            return distribute_tensor(v.detach(), mesh, [Shard(0)])
        if isinstance(v, dict):
            return {k: shard(x) for k, x in v.items()}
        return v

    return model, shard(msd), shard(osd), how


def _full(v):
    from torch.distributed.tensor import DTensor

    return v.full_tensor() if isinstance(v, DTensor) else v


def _worker(rank: int, case_name: str, outdir: str, hf_out: str | None, world: int, port: int,
            result_dir: str) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ["RANK"] = str(rank)
    os.environ["WORLD_SIZE"] = str(world)
    os.environ["LOCAL_RANK"] = str(rank)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    case = CASES[case_name]
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=PG_TIMEOUT_S)
    )
    try:
        extra: dict = {}
        if case.layout in ("fsdp2-optim", "titan"):
            # TorchTitan flattens optimizer state (optimizer.state.<fqn>.exp_avg,
            # optimizer.param_groups.<fqn>.lr); the plain case keeps torch's
            # nested form (optim.state.<fqn>.exp_avg, optim.param_groups.0.lr).
            model, msd, osd, how = _trained_state_dicts(case, world, case.layout == "titan")
            extra["sharding"] = how
            ref_sd = {k: _full(v).detach().clone() for k, v in msd.items()}  # collective
            if case.layout == "titan":
                to_save = {
                    **msd,
                    "optimizer": osd,
                    "lr_scheduler": {"last_epoch": 1},
                    "dataloader": {"pos": 3},
                    "train_state": {"step": torch.tensor(5)},
                }
            else:
                to_save = {"model": msd, "optim": osd}
            if rank == 0 and hf_out:
                _write_reference(case, hf_out, model, ref_sd, extra)
        else:
            from torch.distributed.device_mesh import init_device_mesh

            model, _ = build_model(case.model, case.dtype)
            if case.layout == "2d":
                mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("dp", "tp"))
            else:
                mesh = init_device_mesh("cpu", (world,))
            sd = model.state_dict()
            dsd = _distributed_sd(case.layout, sd, mesh)
            to_save = {"model": dsd} if case.prefix == "model." else dsd
            if rank == 0:
                _write_reference(case, hf_out, model, sd, extra)

        if case.writer == "nocollective":
            dcp.save(to_save, checkpoint_id=outdir, use_collectives=False)
        elif case.writer in ("hf-sharded", "hf-consolidated"):
            writer = dcp.HuggingFaceStorageWriter(
                outdir,
                save_distributed=True,
                enable_consolidation=(case.writer == "hf-consolidated"),
            )
            dcp.save(to_save, storage_writer=writer)
        else:
            dcp.save(to_save, storage_writer=_fs_writer(case, outdir))
        dist.barrier()
        if rank == 0:
            with open(os.path.join(result_dir, "result.json"), "w") as f:
                json.dump(extra, f)
    finally:
        dist.destroy_process_group()


# Modules the forkserver imports once, so that each rank of each case is a
# cheap fork instead of a fresh interpreter paying ~5 s of imports.
_PRELOAD = [
    "torch",
    "torch.distributed.checkpoint",
    "torch.distributed.checkpoint.state_dict",
    "torch.distributed.tensor",
    "torch.distributed.fsdp",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "transformers.models.qwen3.modeling_qwen3",
]
_preload_set = False


def _start_method() -> str:
    """forkserver (default) or spawn (CKPTFS_MP_START=spawn).  Never plain
    fork: the parent may already have intra-op threads running."""
    global _preload_set
    import multiprocessing

    method = os.environ.get("CKPTFS_MP_START", "forkserver")
    if method == "forkserver" and not _preload_set:
        multiprocessing.set_forkserver_preload(_PRELOAD)
        _preload_set = True
    return method


def _make_multi(case: Case, outdir: str, hf_out: str | None) -> dict:
    import torch.multiprocessing as mp

    result_dir = tempfile.mkdtemp(prefix="ckptfs-make-")
    try:
        port = _free_port()
        ctx = mp.start_processes(
            _worker,
            args=(case.name, outdir, hf_out, case.world, port, result_dir),
            nprocs=case.world,
            join=False,
            start_method=_start_method(),
        )
        deadline = time.monotonic() + CASE_TIMEOUT_S
        try:
            while not ctx.join(timeout=1):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{case.name}: ranks did not finish within {CASE_TIMEOUT_S:.0f}s"
                    )
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                    p.join(5)
        with open(os.path.join(result_dir, "result.json")) as f:
            return json.load(f)
    finally:
        shutil.rmtree(result_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# entry points


def make(case_name: str, outdir: str, hf_out: str | None = None) -> dict:
    """Write checkpoint ``case_name`` into ``outdir`` (and the reference into
    ``hf_out``).  Returns a small dict of facts about how it was produced.
    Raises :class:`Unsupported` if the installed torch cannot produce it."""
    if case_name not in CASES:
        raise KeyError(f"unknown case {case_name!r}; known: {', '.join(CASES)}")
    case = CASES[case_name]
    _check_supported(case)
    outdir = os.path.abspath(outdir)
    hf_out = os.path.abspath(hf_out) if hf_out else None
    os.makedirs(outdir, exist_ok=True)
    if hf_out:
        os.makedirs(hf_out, exist_ok=True)
    if case.world == 1:
        return _make_single(case, outdir, hf_out)
    return _make_multi(case, outdir, hf_out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", nargs="?")
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--hf-out", default=None, help="write config.json/reference.pt/logits.pt here")
    ap.add_argument("--list", action="store_true", help="list case names and exit")
    a = ap.parse_args(argv)
    if a.list:
        for c in CASES.values():
            print(f"{c.name}\tworld={c.world}\tmodel={c.model}\tlayout={c.layout}\twriter={c.writer}")
        return 0
    if not a.case or not a.outdir:
        ap.error("CASE and OUTDIR are required")
    if a.case not in CASES:
        ap.error(f"unknown case {a.case!r} (see --list)")
    try:
        make(a.case, a.outdir, a.hf_out)
    except Unsupported as e:
        print(f"unsupported: {e.reason}", file=sys.stderr)
        return 77  # automake's "skip" exit status
    return 0


if __name__ == "__main__":
    sys.exit(main())
