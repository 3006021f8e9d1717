"""End-to-end: checkpoints written by real, current torch are mounted with
ckptfs and read by the real clients.  For every case in make_ckpt.CASES:

* every tensor read through safetensors.safe_open(framework="pt") from the
  mount is bit-identical to what torch.distributed.checkpoint itself loads
  from the checkpoint (torch_ref.load_dcp), and to the model's own state
  dict; no key is missing and none is extra;
* AutoModelForCausalLM.from_pretrained(mount) gives logits identical to the
  original model's;
* `cp -r` of the mount equals `ckptfs export` byte for byte and loads the same;
* where torch wrote its own consolidated safetensors, ckptfs serves the same
  tensors.
"""
from __future__ import annotations

import filecmp
import gc
import json
import os
import subprocess
from pathlib import Path

import pytest

import make_ckpt

CASES = list(make_ckpt.CASES)


def _bits(t):
    import torch
    t = t.detach().contiguous()
    return t.reshape(-1).view(torch.uint8) if t.numel() else t.reshape(-1)


def _same(a, b) -> bool:
    import torch
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and torch.equal(_bits(a), _bits(b))


def _read_all(d: Path) -> dict:
    from safetensors import safe_open
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as s:
            for k in s.keys():
                assert k not in out, f"{k} appears in two files"
                out[k] = s.get_tensor(k).clone()
    return out


def _logits(model_dir: Path, vocab: int):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    model.eval()
    with torch.no_grad():
        logits = model(torch.arange(16).reshape(2, 8) % vocab).logits.clone()
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    del model
    gc.collect()
    return logits, sd


@pytest.fixture
def case(request, ckpt_case):
    name = request.param
    ck, ref = ckpt_case(name)
    info = json.loads((ref / "case.json").read_text())
    return name, ck, ref, info


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_tensors_equal_torch_load(case, mount, e2e_tmp):
    import torch
    import torch_ref
    name, ck, ref, info = case
    loaded = torch_ref.load_dcp(str(ck))
    model_sd = torch.load(ref / "reference.pt")
    with mount(ck, e2e_tmp / "mnt" / f"t-{name}", f"assets={ref}") as m:
        served = _read_all(m)
    gc.collect()
    assert sorted(served) == sorted(model_sd), "served names differ from the model's state dict"
    prefix = info["dcp_prefix"]
    for k, t in served.items():
        assert _same(t, loaded[prefix + k]), f"{k}: differs from torch.distributed.checkpoint's load"
        assert _same(t, model_sd[k]), f"{k}: differs from the saved model's tensor"


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_from_pretrained_logits(case, mount, e2e_tmp):
    import torch
    name, ck, ref, info = case
    want = torch.load(ref / "logits.pt")
    vocab = json.loads((ref / "config.json").read_text())["vocab_size"]
    with mount(ck, e2e_tmp / "mnt" / f"l-{name}", f"assets={ref}") as m:
        got, sd = _logits(m, vocab)
    gc.collect()
    assert got.dtype == want.dtype and torch.equal(got, want), "logits differ from the original model"


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_cp_equals_export(case, mount, e2e_tmp, ckptfs_bin):
    import torch
    name, ck, ref, info = case
    copy, exp = e2e_tmp / "cp" / name, e2e_tmp / "export" / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    with mount(ck, e2e_tmp / "mnt" / f"c-{name}", f"assets={ref}") as m:
        subprocess.run(["cp", "-r", str(m), str(copy)], check=True)
    r = subprocess.run([str(ckptfs_bin), "export", "-q", str(ck), str(exp), "-o", f"assets={ref}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(exp))
    assert sorted(os.listdir(copy)) == files
    match, mismatch, errors = filecmp.cmpfiles(copy, exp, files, shallow=False)
    assert not mismatch and not errors, f"cp -r and export differ: {mismatch + errors}"
    vocab = json.loads((ref / "config.json").read_text())["vocab_size"]
    got, _ = _logits(copy, vocab)
    assert torch.equal(got, torch.load(ref / "logits.pt")), "the copy does not load identically"


def test_matches_torch_consolidation(ckpt_case, mount, e2e_tmp):
    """torch's own consolidate_safetensors_files output (written by the
    consolidated HF case) equals what ckptfs serves from the sharded files."""
    name = "llama-hf-sharded-2-consolidated"
    ck, ref = ckpt_case(name)
    consolidated = _read_all(ck)
    assert consolidated, "torch wrote no consolidated files"
    sharded = ck / "sharded"
    with mount(sharded, e2e_tmp / "mnt" / "consolidation", f"assets={ref}") as m:
        served = _read_all(m)
    gc.collect()
    assert sorted(served) == sorted(consolidated)
    for k, t in served.items():
        assert _same(t, consolidated[k]), f"{k}: differs from torch's consolidation"


@pytest.mark.parametrize("case,dtype", [("llama-fp32", "bf16"), ("llama-dtensor-shard0-4", "bf16"),
                                        ("qwen3moe-fp32", "fp16"), ("llama-bf16", "fp32"),
                                        ("llama-fsdp2-optim-2", "fp16")], indirect=["case"])
def test_dtype_conversion(case, dtype, mount, e2e_tmp):
    """-o dtype=...: every floating tensor equals torch's own .to(dtype) of the
    DCP-loaded tensor bit for bit; config.json says the served dtype; and
    from_pretrained gives the logits of the reference loaded in that dtype."""
    import torch
    import torch_ref
    from transformers import AutoModelForCausalLM
    name, ck, ref, info = case
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    loaded = torch_ref.load_dcp(str(ck))
    prefix = info["dcp_prefix"]
    with mount(ck, e2e_tmp / "mnt" / f"d-{name}-{dtype}", f"assets={ref}", f"dtype={dtype}") as m:
        served = _read_all(m)
        cfg = json.loads((m / "config.json").read_text())
        model = AutoModelForCausalLM.from_pretrained(str(m))
        with torch.no_grad():
            got = model(torch.arange(16).reshape(2, 8) % cfg["vocab_size"]).logits.clone()
        del model
        gc.collect()
    assert cfg.get("dtype", cfg.get("torch_dtype")) == str(tdt).replace("torch.", "")
    for k, t in served.items():
        src = loaded[prefix + k]
        want = src.to(tdt) if src.is_floating_point() else src
        assert _same(t, want), f"{k}: differs from torch's .to({tdt})"
    from transformers import AutoConfig
    refm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(ref)), dtype=tdt)
    refm.load_state_dict({k: v.to(tdt) for k, v in torch.load(ref / "reference.pt").items()})
    refm.eval()
    with torch.no_grad():
        want = refm(torch.arange(16).reshape(2, 8) % cfg["vocab_size"]).logits
    assert torch.equal(got, want), "logits differ from the reference loaded in the same dtype"


def test_safetensors_serialized_distcp(e2e_env, e2e_tmp, mount):
    """FileSystemWriter(serialization_format=SAFETENSORS): .metadata points into
    one safetensors blob per .distcp (torch's own reader cannot load these);
    ckptfs serves them, equal to the saved model."""
    import warnings

    import torch
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM
    try:
        from torch.distributed.checkpoint.filesystem import SerializationFormat
    except ImportError:
        pytest.skip("this torch has no SerializationFormat")
    model, cfg = make_ckpt.build_model("llama")
    ref = e2e_tmp / "st-serial-ref"
    model.save_pretrained(str(ref))
    ck = e2e_tmp / "st-serial"
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": sd}, storage_writer=dcp.FileSystemWriter(
            str(ck), serialization_format=SerializationFormat.SAFETENSORS))
    with mount(ck, e2e_tmp / "mnt" / "st-serial", f"assets={ref}") as m:
        served = _read_all(m)
        loaded = AutoModelForCausalLM.from_pretrained(str(m))
        x = torch.arange(16).reshape(2, 8) % cfg.vocab_size
        with torch.no_grad():
            got = loaded(x).logits.clone()
        del loaded
        gc.collect()
    assert sorted(served) == sorted(sd)
    for k, t in served.items():
        assert _same(t, sd[k]), k
    with torch.no_grad():
        assert torch.equal(got, AutoModelForCausalLM.from_pretrained(str(ref))(x).logits)


@pytest.mark.parametrize("case,dtype", [("llama-fp32", "bf16"), ("llama-dtensor-shard0-4", "fp16")],
                         indirect=["case"])
def test_cache_remount(case, dtype, mount, e2e_tmp):
    """-o cache_dir: the first mount makes and stores the converted blocks, a
    remount serves all of them from the cache and converts nothing; both give
    torch's own .to(dtype) bit for bit, and from_pretrained works on the
    remount."""
    import torch
    import torch_ref
    from transformers import AutoModelForCausalLM
    name, ck, ref, info = case
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    loaded = torch_ref.load_dcp(str(ck))
    prefix = info["dcp_prefix"]
    cache = e2e_tmp / f"cache-{name}-{dtype}"
    opts = (f"assets={ref}", f"dtype={dtype}", f"cache_dir={cache}")

    def stats(m):
        return {k: int(v) for k, v in (ln.split() for ln in (m / ".ckptfs-stats").read_text().splitlines())}

    with mount(ck, e2e_tmp / "mnt" / f"c1-{name}", *opts) as m:
        first = _read_all(m)
        s1 = stats(m)
    with mount(ck, e2e_tmp / "mnt" / f"c2-{name}", *opts) as m:
        second = _read_all(m)
        s2 = stats(m)
        model = AutoModelForCausalLM.from_pretrained(str(m))
        del model
        gc.collect()
    assert s1["blocks_made"] > 0 and s1["cache_writes"] == s1["blocks_made"], s1
    assert s2["blocks_made"] == 0 and s2["bytes_converted"] == 0, s2
    assert s2["cache_hits"] == s1["blocks_made"] and s2["cache_corrupt"] == 0, s2
    assert first.keys() == second.keys() and first
    for k, t in second.items():
        src = loaded[prefix + k]
        want = src.to(tdt) if src.is_floating_point() else src
        assert _same(t, want) and _same(first[k], want), f"{k}: differs from torch's .to({tdt})"
