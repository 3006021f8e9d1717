"""Checkpoint layouts end to end, written by real torch at test time:

* BAGEL (ByteDance BAGEL-7B-MoT) training steps: ema.safetensors +
  model.safetensors, or ema/ and model/ DCP directories, with BAGEL's real key
  patterns at tiny sizes; served as BAGEL's model directory (one weights file
  under BAGEL's names, the base model's configs, tokenizer and ae.safetensors
  byte for byte), per view, key class stage and dtype;
* NeMo AutoModel's model/ + .hf_metadata/fqn_to_dtype_mapping.json: tensors
  served in their original HF dtype;
* assets named by a TorchTitan run config (hf_assets_path) or a
  Megatron-Bridge run_config.yaml (hf_model_id);
* run roots whose steps hold trained and EMA weights: model/ and ema/ side by
  side.

Every served tensor is compared with torch.equal against the tensor torch
wrote (converted with torch's own .to(dtype) where a dtype is asked for).
The key classes are computed here independently, from the patterns of NeMo
AutoModel's BAGEL adapter written as Python regexes."""
from __future__ import annotations

import gc
import json
import re
import subprocess
import warnings

import pytest

import make_ckpt

# NeMo AutoModel's BAGEL adapter (nemo_automodel/components/models/bagel/state_dict_adapter.py)
_L = r"^language_model\.model\.layers\.\d+\."
UND = [r"^language_model\.model\.embed_tokens\.weight$", r"^language_model\.model\.norm\.weight$",
       r"^language_model\.lm_head\.weight$", _L + r"self_attn\.(q|k|v|qkv)_proj\.(weight|bias)$",
       _L + r"self_attn\.o_proj\.weight$", _L + r"self_attn\.q_norm\.weight$",
       _L + r"self_attn\.k_norm\.weight$", _L + r"mlp\.(gate|up|down|gate_up)_proj\.weight$",
       _L + r"input_layernorm\.weight$", _L + r"post_attention_layernorm\.weight$", r"^vit_model\.",
       r"^connector\.(fc1|fc2)\.(weight|bias)$", r"^vit_pos_embed\.pos_embed$"]
GEN = [_L + r"self_attn\.(q|k|v|qkv)_proj_moe_gen\.(weight|bias)$", _L + r"self_attn\.o_proj_moe_gen\.weight$",
       _L + r"self_attn\.q_norm_moe_gen\.weight$", _L + r"self_attn\.k_norm_moe_gen\.weight$",
       _L + r"mlp_moe_gen\.(gate|up|down|gate_up)_proj\.weight$", _L + r"input_layernorm_moe_gen\.weight$",
       _L + r"post_attention_layernorm_moe_gen\.weight$", r"^language_model\.model\.norm_moe_gen\.weight$",
       r"^time_embedder\.mlp\.(0|2)\.(weight|bias)$", r"^vae2llm\.(weight|bias)$", r"^llm2vae\.(weight|bias)$",
       r"^latent_pos_embed\.pos_embed$"]
VAE = [r"^encoder\.", r"^decoder\."]


def _cls(k):
    for name, pats in (("und", UND), ("gen", GEN), ("vae", VAE)):
        if any(re.search(p, k) for p in pats):
            return name
    return "unknown"


def bagel_state_dict(seed, conv=False, L=2, H=16, V=40, F=24, D=8):
    """A BAGEL-7B-MoT-shaped state dict at tiny sizes: Qwen2 language model
    with MoT *_moe_gen siblings, SigLIP ViT, connector, time embedder,
    vae2llm/llm2vae, position embeddings, and (as merged checkpoints do) two
    VAE tensors."""
    import torch
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g)

    sd = {"language_model.model.embed_tokens.weight": r(V, H), "language_model.model.norm.weight": r(H),
          "language_model.model.norm_moe_gen.weight": r(H), "language_model.lm_head.weight": r(V, H)}
    for i in range(L):
        p = f"language_model.model.layers.{i}."
        for m in ("", "_moe_gen"):
            for x in "qkv":
                sd[f"{p}self_attn.{x}_proj{m}.weight"] = r(H, H)
                sd[f"{p}self_attn.{x}_proj{m}.bias"] = r(H)
            sd[f"{p}self_attn.o_proj{m}.weight"] = r(H, H)
            sd[f"{p}self_attn.q_norm{m}.weight"] = r(4)
            sd[f"{p}self_attn.k_norm{m}.weight"] = r(4)
            sd[f"{p}mlp{m}.gate_proj.weight"] = r(F, H)
            sd[f"{p}mlp{m}.up_proj.weight"] = r(F, H)
            sd[f"{p}mlp{m}.down_proj.weight"] = r(H, F)
            sd[f"{p}input_layernorm{m}.weight"] = r(H)
            sd[f"{p}post_attention_layernorm{m}.weight"] = r(H)
    v = "vit_model.vision_model."
    sd[v + "embeddings.patch_embedding.weight"] = r(D, 3, 2, 2) if conv else r(D, 3 * 2 * 2)
    sd[v + "embeddings.patch_embedding.bias"] = r(D)
    sd[v + "embeddings.position_embedding.weight"] = r(16, D)
    for w in ("q_proj", "k_proj", "v_proj", "out_proj"):
        sd[f"{v}encoder.layers.0.self_attn.{w}.weight"] = r(D, D)
    sd[v + "encoder.layers.0.mlp.fc1.weight"] = r(12, D)
    sd[v + "encoder.layers.0.mlp.fc2.weight"] = r(D, 12)
    sd[v + "post_layernorm.weight"] = r(D)
    sd.update({"connector.fc1.weight": r(H, D), "connector.fc1.bias": r(H), "connector.fc2.weight": r(H, H),
               "connector.fc2.bias": r(H), "vit_pos_embed.pos_embed": r(16, H),
               "time_embedder.mlp.0.weight": r(H, 8), "time_embedder.mlp.0.bias": r(H),
               "time_embedder.mlp.2.weight": r(H, H), "time_embedder.mlp.2.bias": r(H),
               "vae2llm.weight": r(H, 4), "vae2llm.bias": r(H), "llm2vae.weight": r(4, H), "llm2vae.bias": r(4),
               "latent_pos_embed.pos_embed": r(16, H),
               "encoder.conv_in.weight": r(4, 3, 3, 3), "decoder.conv_out.weight": r(3, 4, 3, 3)})
    assert all(_cls(k) != "unknown" for k in sd)
    return sd


BASE_FILES = ("llm_config.json", "vit_config.json", "config.json", "tokenizer.json",
              "tokenizer_config.json", "ae.safetensors")


@pytest.fixture(scope="module")
def bagel(e2e_env, e2e_tmp):
    """A BAGEL training step (results/checkpoints/0000100/) and a base model directory."""
    import torch
    from safetensors.torch import save_file
    root = e2e_tmp / "bagel"
    step = root / "results" / "checkpoints" / "0000100"
    step.mkdir(parents=True)
    ema, model = bagel_state_dict(1), bagel_state_dict(2)
    save_file(ema, str(step / "ema.safetensors"))
    save_file(model, str(step / "model.safetensors"))
    torch.save({"step": 100}, step / "scheduler.pt")  # what else a BAGEL step holds
    base = root / "BAGEL-7B-MoT"
    base.mkdir()
    (base / "llm_config.json").write_text(json.dumps({"hidden_size": 16, "torch_dtype": "bfloat16",
                                                      "model_type": "qwen2"}, indent=2) + "\n")
    (base / "vit_config.json").write_text('{"hidden_size": 8, "patch_size": 2,  "torch_dtype": "float32"}\n')
    (base / "config.json").write_text('{"visual_gen": true, "visual_und": true}\n')
    (base / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    (base / "tokenizer_config.json").write_text('{"model_max_length": 32768}')
    g = torch.Generator().manual_seed(3)
    save_file({"encoder.conv_in.weight": torch.randn(4, 3, 3, 3, generator=g),
               "decoder.conv_out.weight": torch.randn(3, 4, 3, 3, generator=g)}, str(base / "ae.safetensors"))
    save_file(bagel_state_dict(9), str(base / "ema.safetensors"))  # the release weights: never served here
    return step, base, ema, model


def _served(path):
    from safetensors import safe_open
    out = {}
    with safe_open(str(path), framework="pt") as s:
        for k in s.keys():
            out[k] = s.get_tensor(k).clone()
    return out


@pytest.mark.parametrize("view,stage,dtype", [
    (None, None, None), ("ema", 1, "bf16"), ("model", 2, "bf16"), ("model", None, "fp16"), (None, 2, None)])
def test_bagel_model_directory(bagel, view, stage, dtype, mount, e2e_tmp):
    import torch
    step, base, ema, model = bagel
    src = model if view == "model" else ema
    fname = "model.safetensors" if view == "model" else "ema.safetensors"
    opts = [f"assets={base}"] + ([f"view={view}"] if view else []) + \
        ([f"bagel_stage={stage}"] if stage else []) + ([f"dtype={dtype}"] if dtype else [])
    keep = {None: ("und", "gen", "vae"), 1: ("und",), 2: ("und", "gen")}[stage]
    want = {k for k in src if _cls(k) in keep}
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[dtype]
    name = f"bagel-{view}-{stage}-{dtype}"
    with mount(step, e2e_tmp / "mnt" / name, *opts) as m:
        listing = sorted(p.name for p in m.iterdir())
        served = _served(m / fname)
        copies = {f: (m / f).read_bytes() for f in BASE_FILES}
    gc.collect()
    assert listing == sorted((fname,) + BASE_FILES)
    assert set(served) == want, sorted(set(served) ^ want)
    for k, t in served.items():
        w = src[k].to(tdt) if tdt else src[k]
        assert t.dtype == w.dtype and torch.equal(t, w), f"{k}: differs from the source tensor"
    for f, data in copies.items():
        assert data == (base / f).read_bytes(), f"{f} is not served byte for byte"


def test_bagel_dcp_directories(e2e_env, e2e_tmp, mount, ckptfs_bin):
    """A step with ema/ and model/ DCP directories of the same keys (here the
    conv layout of the ViT patch embedding, which inspect names)."""
    import torch
    import torch.distributed.checkpoint as dcp
    step = e2e_tmp / "bagel-dcp" / "0000200"
    ema, model = bagel_state_dict(4, conv=True), bagel_state_dict(5, conv=True)
    for half, sd in (("ema", ema), ("model", model)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save(sd, storage_writer=dcp.FileSystemWriter(str(step / half)))
    r = subprocess.run([str(ckptfs_bin), "inspect", str(step)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ViT patch embedding: conv [8, 3, 2, 2]" in r.stdout and "ema.safetensors" in r.stdout, r.stdout
    for view, src in ((None, ema), ("model", model)):
        with mount(step, e2e_tmp / "mnt" / f"bagel-dcp-{view}", *([f"view={view}"] if view else [])) as m:
            fname = "model.safetensors" if view else "ema.safetensors"
            assert sorted(p.name for p in m.iterdir()) == [fname]
            served = _served(m / fname)
        assert set(served) == set(src)
        for k, t in served.items():
            assert torch.equal(t, src[k]), k
    r = subprocess.run([str(ckptfs_bin), "inspect", str(e2e_tmp / "bagel" / "results" / "checkpoints" /
                                                           "0000100")], capture_output=True, text=True)
    if r.returncode == 0:  # the module fixture's step, when it ran first
        assert "ViT patch embedding: linear [8, 12]" in r.stdout, r.stdout


def test_bagel_unknown_key_is_refused(e2e_env, e2e_tmp, ckptfs_bin):
    from safetensors.torch import save_file
    import torch
    step = e2e_tmp / "bagel-unknown"
    step.mkdir()
    sd = bagel_state_dict(6)
    sd["language_model.model.mystery_head.weight"] = torch.ones(2, 2)
    save_file(sd, str(step / "ema.safetensors"))
    r = subprocess.run([str(ckptfs_bin), "inspect", str(step)], capture_output=True, text=True)
    assert r.returncode == 1 and "'language_model.model.mystery_head.weight'" in r.stderr, r.stderr
    r = subprocess.run([str(ckptfs_bin), "inspect", str(step), "-o", "mapping_strict=0"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "language_model.model.mystery_head.weight: in no BAGEL key class" in r.stdout
    assert f"shown: {len(sd) - 1} tensors" in r.stdout, r.stdout


def test_automodel_dtype_mapping(e2e_env, e2e_tmp, mount, ckptfs_bin):
    """AutoModel's epoch_E_step_S/model/: HF-flavoured DCP shards (fp32 master
    weights) and .hf_metadata/ with config, tokenizer and
    fqn_to_dtype_mapping.json.  By default (and with dtype=auto) each tensor
    is served in its mapped dtype; -o dtype=fp16 casts all; dtype=orig keeps
    the stored fp32."""
    import torch
    import torch.distributed.checkpoint as dcp
    W = getattr(dcp, "HuggingFaceStorageWriter", None)
    if W is None:
        pytest.skip("this torch has no HuggingFaceStorageWriter")
    model, cfg = make_ckpt.build_model("llama")
    ref = e2e_tmp / "am-ref"
    model.to(torch.bfloat16).save_pretrained(str(ref))  # the base model: bf16
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}  # fp32 master copy
    mdir = e2e_tmp / "am" / "checkpoints" / "epoch_0_step_10" / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(sd, storage_writer=W(str(mdir), save_distributed=True,
                                      fqn_to_index_mapping={k: 1 + (i % 2) for i, k in enumerate(sd)}),
                 no_dist=True)
    meta = mdir / ".hf_metadata"
    meta.mkdir()
    (meta / "config.json").write_bytes((ref / "config.json").read_bytes())
    dmap = {k: ("F32" if k.endswith("norm.weight") else "BF16") for k in sd}
    (meta / "fqn_to_dtype_mapping.json").write_text(json.dumps(dmap))
    assert any(v == "F32" for v in dmap.values()) and any(v == "BF16" for v in dmap.values())
    tdt = {"F32": torch.float32, "BF16": torch.bfloat16}
    r = subprocess.run([str(ckptfs_bin), "inspect", str(mdir)], capture_output=True, text=True)
    assert r.returncode == 0 and f"dtypes: {len(sd)} tensors in their original" in r.stdout, r.stdout
    assert "(next to the weights (.hf_metadata/))" in r.stdout, r.stdout
    for opt, want in ((None, lambda k: tdt[dmap[k]]), ("dtype=auto", lambda k: tdt[dmap[k]]),
                      ("dtype=fp16", lambda k: torch.float16), ("dtype=orig", lambda k: torch.float32)):
        with mount(mdir, e2e_tmp / "mnt" / f"am-{opt}", *([opt] if opt else [])) as m:
            served = {}
            for f in sorted(m.glob("*.safetensors")):
                served.update(_served(f))
        assert set(served) == set(sd)
        for k, t in served.items():
            assert torch.equal(t, sd[k].to(want(k))) and t.dtype == want(k), f"{opt}: {k}"


def _llama_dcp(e2e_tmp, name):
    import torch.distributed.checkpoint as dcp
    model, cfg = make_ckpt.build_model("llama")
    base = e2e_tmp / f"{name}-base"
    model.save_pretrained(str(base))
    (base / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return sd, base, dcp


def test_assets_from_torchtitan_run_config(e2e_env, e2e_tmp, mount, ckptfs_bin):
    """outputs/checkpoint/step-N with the job config one level up naming
    hf_assets_path relative to itself (older TorchTitan: model.hf_assets_path);
    the job config is not taken for a model config."""
    import torch
    sd, base, dcp = _llama_dcp(e2e_tmp, "titan-rc")
    for variant, cfgname, body in (("new", "config.json", {"hf_assets_path": "../../titan-rc-base"}),
                                   ("old", "job_config.json",
                                    {"job": {"dump_folder": "."}, "training": {"steps": 10},
                                     "model": {"name": "llama3", "hf_assets_path": "../../titan-rc-base"}})):
        run = e2e_tmp / f"titan-rc-{variant}" / "checkpoint"
        step = run / "step-10"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save(sd, storage_writer=dcp.FileSystemWriter(str(step)))
        (run / cfgname).write_text(json.dumps(body))
        key = "hf_assets_path" if variant == "new" else "model.hf_assets_path"
        r = subprocess.run([str(ckptfs_bin), "inspect", str(step)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert f"assets: {base.resolve()} ({key} in {(run / cfgname).resolve()})" in r.stdout, r.stdout
        with mount(step, e2e_tmp / "mnt" / f"titan-rc-{variant}") as m:
            assert (m / "config.json").read_bytes() == (base / "config.json").read_bytes()
            assert (m / "tokenizer_config.json").read_bytes() == (base / "tokenizer_config.json").read_bytes()
            served = _served(m / "model.safetensors")
        assert all(torch.equal(served[k], sd[k]) for k in sd) and set(served) == set(sd)


def test_assets_from_megatron_run_config(e2e_env, e2e_tmp, mount, ckptfs_bin):
    """A Megatron-Bridge iter_N/run_config.yaml whose model.hf_model_id is a
    local HF directory: its config.json also picks the Megatron mapping; a Hub
    id is not a directory here and is reported, not used."""
    import torch
    from transformers import AutoModelForCausalLM
    from test_mapping import _megatron_native
    model, cfg = make_ckpt.build_model("llama")
    base = e2e_tmp / "bridge-base"
    model.save_pretrained(str(base))
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    it = e2e_tmp / "bridge-run" / "iter_0000010"
    import torch.distributed.checkpoint as dcp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(_megatron_native(sd, cfg), storage_writer=dcp.FileSystemWriter(str(it)))
    (it / "metadata.json").write_text('{"sharded_backend": "torch_dist"}')
    yaml = ("_target_: megatron.bridge.training.config.ConfigContainer\n"
            "checkpoint:\n  save: /results/ckpt  # where\n"
            "model:\n  _target_: megatron.bridge.models.llama.Llama32ModelProvider1B\n"
            "  num_layers: 2\n  extra_checkpoint_metadata:\n"
            f"    hf_model_id: '{base}'\n"
            "tokenizer:\n  hf_model_id: not-this-one\n")
    (it / "run_config.yaml").write_text(yaml)
    r = subprocess.run([str(ckptfs_bin), "inspect", str(it)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"(model.extra_checkpoint_metadata.hf_model_id in {(it / 'run_config.yaml').resolve()})" in r.stdout
    assert "mapping: megatron-llama" in r.stdout, r.stdout
    with mount(it, e2e_tmp / "mnt" / "bridge") as m:
        assert (m / "config.json").read_bytes() == (base / "config.json").read_bytes()
        loaded = AutoModelForCausalLM.from_pretrained(str(m))
        lsd = {k: v.detach().clone() for k, v in loaded.state_dict().items()}
        del loaded
        gc.collect()
    for k, v in sd.items():
        assert torch.equal(lsd[k], v), k
    (it / "run_config.yaml").write_text("model:\n  hf_model_id: meta-llama/Llama-3.2-1B\n")
    r = subprocess.run([str(ckptfs_bin), "inspect", str(it)], capture_output=True, text=True)
    assert "model.hf_model_id names 'meta-llama/Llama-3.2-1B', which is not a directory here" in r.stderr
    assert "assets: none" in r.stdout, r.stdout


def test_run_root_model_and_ema_side_by_side(e2e_env, e2e_tmp, mount, bagel):
    """A run root: a TorchTitan step with EMA copies and a BAGEL step show
    model/ and ema/; a step without EMA shows its files; with -o view=ema
    every step shows that view's files directly."""
    import torch
    import torch.distributed.checkpoint as dcp
    from test_mapping import _titan_native
    model, cfg = make_ckpt.build_model("llama")
    ref = e2e_tmp / "side-ref"
    model.save_pretrained(str(ref))
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema_sd = {k: (v * 0.5).contiguous() for k, v in sd.items()}
    native = _titan_native(sd, cfg)
    native.pop("freqs_cis")
    plain = dict(native)
    for fqn, v in _titan_native(ema_sd, cfg).items():
        if fqn != "freqs_cis":
            native[f"ema.state.{fqn}.ema_params.decay_0p999"] = v
    run = e2e_tmp / "side-run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(native, storage_writer=dcp.FileSystemWriter(str(run / "step-20")))
        dcp.save(plain, storage_writer=dcp.FileSystemWriter(str(run / "step-10")))
    with mount(run, e2e_tmp / "mnt" / "side", f"assets={ref}") as m:
        assert sorted(p.name for p in (m / "step-20").iterdir()) == ["ema", "model"]
        assert "model.safetensors" in [p.name for p in (m / "step-10").iterdir()]
        trained = _served(m / "step-20" / "model" / "model.safetensors")
        emas = _served(m / "step-20" / "ema" / "model.safetensors")
        assert (m / "step-20" / "ema" / "config.json").read_bytes() == (ref / "config.json").read_bytes()
    assert set(trained) == set(sd) == set(emas)
    for k in sd:
        assert torch.equal(trained[k], sd[k]) and torch.equal(emas[k], ema_sd[k]), k
    with mount(run, e2e_tmp / "mnt" / "side-ema", f"assets={ref}", "view=ema") as m:
        assert "model.safetensors" in [p.name for p in (m / "step-20").iterdir()]
        emas = _served(m / "step-20" / "model.safetensors")
    assert all(torch.equal(emas[k], ema_sd[k]) for k in sd)
    step, base, ema, bmodel = bagel
    with mount(step.parent, e2e_tmp / "mnt" / "side-bagel", f"assets={base}", "dtype=bf16") as m:
        assert sorted(p.name for p in (m / "0000100").iterdir()) == ["ema", "model"]
        assert "ae.safetensors" in [p.name for p in (m / "0000100" / "model").iterdir()]
        e = _served(m / "0000100" / "ema" / "ema.safetensors")
        t = _served(m / "0000100" / "model" / "model.safetensors")
    assert set(e) == set(ema) and set(t) == set(bmodel)
    for k in ema:
        assert torch.equal(e[k], ema[k].to(torch.bfloat16)) and torch.equal(t[k], bmodel[k].to(torch.bfloat16)), k


def test_bagel_model_only(e2e_env, e2e_tmp, ckptfs_bin, mount):
    """A step that kept only model.safetensors: served under that name, and
    -o view=ema is refused rather than passing trained weights off as EMA."""
    import torch
    from safetensors.torch import save_file
    step = e2e_tmp / "bagel-model-only"
    step.mkdir()
    sd = bagel_state_dict(7)
    save_file(sd, str(step / "model.safetensors"))
    r = subprocess.run([str(ckptfs_bin), "inspect", str(step), "-o", "view=ema"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "holds only model.safetensors" in r.stderr, r.stderr
    with mount(step, e2e_tmp / "mnt" / "bagel-model-only", "bagel_stage=1") as m:
        assert sorted(p.name for p in m.iterdir()) == ["model.safetensors"]
        served = _served(m / "model.safetensors")
    assert set(served) == {k for k in sd if _cls(k) == "und"}
    assert all(torch.equal(t, sd[k]) for k, t in served.items())
