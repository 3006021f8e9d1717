"""Mappings end to end: a checkpoint is written by real torch in a trainer's
native layout (built from a HuggingFace model by the inverse of the documented
transform), mounted with the mapping that auto-detection picks from its keys
and the assets' config.json, and compared with the HuggingFace model: every
tensor bit for bit, and logits through from_pretrained.  Failing cases check
that a config that disagrees with the shapes is refused with a clear message."""
from __future__ import annotations

import gc
import json
import subprocess
import warnings

import pytest

import make_ckpt


def _save_dcp(sd, outdir):
    import torch.distributed.checkpoint as dcp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save(sd, storage_writer=dcp.FileSystemWriter(str(outdir)))


def _hf(kind, tmp, name):
    """The HF model, its save_pretrained directory (the reference) and its state dict."""
    model, cfg = make_ckpt.build_model(kind)
    ref = tmp / f"hf-{name}"
    model.save_pretrained(str(ref))
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return model, cfg, ref, sd


def _megatron_native(sd, cfg, pad_vocab=8, layout="stacked"):
    """HF Llama/Mistral/Qwen/Mixtral state dict -> Megatron-Core torch_dist
    layout: GQA-interleaved QKV, [gate; up] fc1, padded vocabulary, and
      stacked:   decoder.layers.<p> with a leading layer axis (homogeneous stacks),
                 MoE experts with a layer and an expert axis [L, E, ...];
      per-layer: decoder.layers.<i>.<p> (non-homogeneous stacks), experts [E, ...];
      singleton: per-layer keys, experts per expert (mlp.experts.experts.<e>.<p>) and
                 fc1 as separate weight_w (gate) / weight_v (up) keys
                 (singleton_local_shards, converters.md 4.1, 15.6)."""
    import torch
    L = cfg.num_hidden_layers
    nq, ng = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // nq
    hpg = nq // ng
    p = "model.layers.{}."

    def pad(w):
        extra = torch.randn(pad_vocab, w.shape[1], generator=torch.Generator().manual_seed(1))
        return torch.cat([w, extra.to(w.dtype)])

    def qkv(i, kind):
        q = sd[p.format(i) + f"self_attn.q_proj.{kind}"]
        k = sd[p.format(i) + f"self_attn.k_proj.{kind}"]
        v = sd[p.format(i) + f"self_attn.v_proj.{kind}"]
        parts = []
        for g in range(ng):
            parts += [q[g * hpg * hd:(g + 1) * hpg * hd], k[g * hd:(g + 1) * hd], v[g * hd:(g + 1) * hd]]
        return torch.cat(parts)

    def layer(i):
        """One layer's Megatron parameters; MoE experts with an expert axis."""
        h = lambda n: sd[p.format(i) + n]
        out = {
            "self_attention.linear_qkv.layer_norm_weight": h("input_layernorm.weight"),
            "self_attention.linear_qkv.weight": qkv(i, "weight"),
            "self_attention.linear_proj.weight": h("self_attn.o_proj.weight"),
            "self_attention.linear_qkv._extra_state": torch.zeros(4, dtype=torch.uint8),
        }
        if p.format(i) + "self_attn.q_proj.bias" in sd:
            out["self_attention.linear_qkv.bias"] = qkv(i, "bias")
        if p.format(i) + "self_attn.q_norm.weight" in sd:
            out["self_attention.q_layernorm.weight"] = h("self_attn.q_norm.weight")
            out["self_attention.k_layernorm.weight"] = h("self_attn.k_norm.weight")
        if p.format(i) + "mlp.experts.gate_up_proj" in sd:  # Qwen3-MoE / Mixtral: router, experts
            out.update({
                "pre_mlp_layernorm.weight": h("post_attention_layernorm.weight"),
                "mlp.router.weight": h("mlp.gate.weight"),
                "mlp.experts.experts.linear_fc1.weight": h("mlp.experts.gate_up_proj"),
                "mlp.experts.experts.linear_fc2.weight": h("mlp.experts.down_proj"),
            })
        else:
            out.update({
                "mlp.linear_fc1.layer_norm_weight": h("post_attention_layernorm.weight"),
                "mlp.linear_fc1.weight": torch.cat([h("mlp.gate_proj.weight"), h("mlp.up_proj.weight")]),
                "mlp.linear_fc2.weight": h("mlp.down_proj.weight"),
            })
        return out

    out = {
        "embedding.word_embeddings.weight": pad(sd["model.embed_tokens.weight"]),
        "decoder.final_layernorm.weight": sd["model.norm.weight"],
    }
    if not cfg.tie_word_embeddings:
        out["output_layer.weight"] = pad(sd["lm_head.weight"])
    layers = [layer(i) for i in range(L)]
    if layout == "stacked":
        for name in layers[0]:
            out[f"decoder.layers.{name}"] = torch.stack([lp[name] for lp in layers]).contiguous()
        return out
    for i, lp in enumerate(layers):
        for name, t in lp.items():
            if layout == "singleton" and name.startswith("mlp.experts.experts."):
                leaf = name[len("mlp.experts.experts."):]
                for e in range(t.shape[0]):
                    key = f"decoder.layers.{i}.mlp.experts.experts.{e}.{leaf}"
                    if leaf == "linear_fc1.weight":
                        w, v = t[e].chunk(2)
                        out[key + "_w"], out[key + "_v"] = w.contiguous(), v.contiguous()
                    else:
                        out[key] = t[e].contiguous()
            elif layout == "singleton" and name == "mlp.linear_fc1.weight":
                w, v = t.chunk(2)
                out[f"decoder.layers.{i}.{name}_w"] = w.contiguous()
                out[f"decoder.layers.{i}.{name}_v"] = v.contiguous()
            else:
                out[f"decoder.layers.{i}.{name}"] = t.contiguous()
    return out


def _titan_native(sd, cfg):
    """HF Llama state dict -> TorchTitan Llama 3 layout (RoPE-permuted wq/wk)."""
    import torch
    nq, ng = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = cfg.hidden_size // nq

    def permute(w, n):  # inverse of the HF conversion: rows (h, j, i) -> (h, i, j)
        return w.view(n, 2, hd // 2, w.shape[1]).transpose(1, 2).reshape(n * hd, w.shape[1]).contiguous()

    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        out[f"layers.{i}.attention.wq.weight"] = permute(sd[p + "self_attn.q_proj.weight"], nq)
        out[f"layers.{i}.attention.wk.weight"] = permute(sd[p + "self_attn.k_proj.weight"], ng)
        out[f"layers.{i}.attention.wv.weight"] = sd[p + "self_attn.v_proj.weight"]
        out[f"layers.{i}.attention.wo.weight"] = sd[p + "self_attn.o_proj.weight"]
        out[f"layers.{i}.feed_forward.w1.weight"] = sd[p + "mlp.gate_proj.weight"]
        out[f"layers.{i}.feed_forward.w3.weight"] = sd[p + "mlp.up_proj.weight"]
        out[f"layers.{i}.feed_forward.w2.weight"] = sd[p + "mlp.down_proj.weight"]
        out[f"layers.{i}.attention_norm.weight"] = sd[p + "input_layernorm.weight"]
        out[f"layers.{i}.ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
    if not cfg.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    out["freqs_cis"] = torch.polar(torch.ones(8, hd // 2), torch.zeros(8, hd // 2))
    return out


def _per_expert(sd):
    """transformers 5 fused experts as the per-expert HF keys the mappings serve."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".mlp.experts.gate_up_proj"):
            i = v.shape[1] // 2
            for e in range(v.shape[0]):
                out[k.replace("gate_up_proj", f"{e}.gate_proj.weight")] = v[e, :i]
                out[k.replace("gate_up_proj", f"{e}.up_proj.weight")] = v[e, i:]
        elif k.endswith(".mlp.experts.down_proj"):
            for e in range(v.shape[0]):
                out[k.replace("down_proj", f"{e}.down_proj.weight")] = v[e]
        else:
            out[k] = v
    return out


def _saved(ref):
    """The tensors save_pretrained wrote (HF on-disk names, e.g. Mixtral's
    block_sparse_moe.experts.<e>.w1/w2/w3): an expectation independent of ckptfs."""
    from safetensors import safe_open
    out = {}
    for f in sorted(ref.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as s:
            for k in s.keys():
                out[k] = s.get_tensor(k).clone()
    return out


def _check_mount(mount, ckpt, ref, sd, tmp, name, want_mapping, ckptfs_bin, ondisk=False):
    """Mounts ckpt with ref's config.json and compares every served tensor
    with sd (the model's state dict, fused experts as per-expert keys) or,
    with ondisk, with the files save_pretrained wrote into ref; then logits
    through from_pretrained on the mount."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt), "-o", f"assets={ref}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"mapping: {want_mapping}" in r.stdout, r.stdout
    with mount(ckpt, tmp / f"mnt-{name}", f"assets={ref}") as m:
        served = {}
        for f in sorted(m.glob("*.safetensors")):
            with safe_open(str(f), framework="pt") as s:
                for k in s.keys():
                    served[k] = s.get_tensor(k).clone()
        model = AutoModelForCausalLM.from_pretrained(str(m))
        x = torch.arange(16).reshape(2, 8) % model.config.vocab_size
        with torch.no_grad():
            got = model(x).logits.clone()
        del model
        gc.collect()
    sd = _saved(ref) if ondisk else _per_expert(sd)
    want_names = {k for k in sd if not (k == "lm_head.weight" and "lm_head.weight" not in served
                                         and json.loads((ref / "config.json").read_text()).get("tie_word_embeddings"))}
    assert set(served) == want_names, (sorted(set(served) ^ want_names))
    for k, t in served.items():
        assert t.dtype == sd[k].dtype and torch.equal(t, sd[k]), f"{k} differs from the HF model"
    ref_model = AutoModelForCausalLM.from_pretrained(str(ref))
    with torch.no_grad():
        want = ref_model(x).logits
    assert torch.equal(got, want), "logits differ from the HF model's"


_MEGATRON_METADATA = {"sharded_backend": "torch_dist", "sharded_backend_version": 1,
                      "common_backend": "torch", "common_backend_version": 1}


@pytest.mark.parametrize("kind", ["llama", "llama-tied", "qwen2", "qwen3", "qwen3moe", "mistral", "mixtral"])
def test_megatron_to_hf(kind, e2e_env, e2e_tmp, mount, ckptfs_bin):
    """Stacked layers (homogeneous Megatron-Core stacks); Mistral is GQA and
    untied; Mixtral's MoE block is served under block_sparse_moe names and
    compared with the files save_pretrained writes."""
    model, cfg, ref, sd = _hf(kind, e2e_tmp, f"meg-{kind}")
    ckpt = e2e_tmp / f"megatron-{kind}"
    _save_dcp(_megatron_native(sd, cfg), ckpt)
    (ckpt / "metadata.json").write_text(json.dumps(_MEGATRON_METADATA))
    mixtral = kind == "mixtral"
    _check_mount(mount, ckpt, ref, sd, e2e_tmp, f"meg-{kind}",
                 "megatron-mixtral" if mixtral else "megatron-llama", ckptfs_bin, ondisk=mixtral)


@pytest.mark.parametrize("kind,layout", [("llama", "per-layer"), ("llama", "singleton"),
                                         ("qwen3moe", "per-layer"), ("qwen3moe", "singleton"),
                                         ("mixtral", "singleton")])
def test_megatron_per_layer_to_hf(kind, layout, e2e_env, e2e_tmp, mount, ckptfs_bin):
    """Per-layer keys decoder.layers.<i>.<p> (non-homogeneous stacks), and
    singleton_local_shards: per-expert keys mlp.experts.experts.<e>.<p> and
    fc1 as weight_w (gate) / weight_v (up)."""
    name = f"meg-{layout}-{kind}"
    model, cfg, ref, sd = _hf(kind, e2e_tmp, name)
    ckpt = e2e_tmp / name
    native = _megatron_native(sd, cfg, layout=layout)
    assert "decoder.layers.1.self_attention.linear_qkv.weight" in native
    if layout == "singleton":
        assert any(k.endswith("linear_fc1.weight_w") for k in native)
    _save_dcp(native, ckpt)
    (ckpt / "metadata.json").write_text(json.dumps(_MEGATRON_METADATA))
    mixtral = kind == "mixtral"
    _check_mount(mount, ckpt, ref, sd, e2e_tmp, name,
                 "megatron-mixtral" if mixtral else "megatron-llama", ckptfs_bin, ondisk=mixtral)


@pytest.mark.parametrize("kind", ["llama", "llama-tied"])
def test_torchtitan_to_hf(kind, e2e_env, e2e_tmp, mount, ckptfs_bin):
    import torch
    model, cfg, ref, sd = _hf(kind, e2e_tmp, f"titan-{kind}")
    ckpt = e2e_tmp / f"titan-{kind}"
    native = _titan_native(sd, cfg)
    native["train_state"] = {"step": torch.tensor(7)}
    _save_dcp(native, ckpt)
    _check_mount(mount, ckpt, ref, sd, e2e_tmp, f"titan-{kind}", "torchtitan-llama", ckptfs_bin)


def test_megatron_config_mismatch_is_refused(e2e_env, e2e_tmp, ckptfs_bin):
    model, cfg, ref, sd = _hf("llama", e2e_tmp, "meg-bad")
    ckpt = e2e_tmp / "megatron-bad"
    _save_dcp(_megatron_native(sd, cfg), ckpt)
    (ckpt / "metadata.json").write_text("{}")
    bad = e2e_tmp / "bad-config"
    bad.mkdir()
    c = json.loads((ref / "config.json").read_text())
    c["num_key_value_heads"] = c["num_attention_heads"]  # wrong: the checkpoint is GQA
    (bad / "config.json").write_text(json.dumps(c))
    r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt), "-o", f"assets={bad}"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "does not match the checkpoint" in r.stderr, r.stderr
    r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt), "-o", f"assets={ref}",
                        "-o", "mapping_strict=1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _veomni_native(sd, cfg):
    """HF state dict -> VeOmni layout: {"model": ...} with fused qkv_proj and
    gate_up_proj, MoE experts as stacked [E, I, H] tensors, plus optimizer
    state next to it."""
    import torch
    out = {}
    for k, v in sd.items():
        if ".self_attn.k_proj." in k or ".self_attn.v_proj." in k:
            continue
        if ".self_attn.q_proj." in k:
            kk, vv = k.replace("q_proj", "k_proj"), k.replace("q_proj", "v_proj")
            out[k.replace("q_proj", "qkv_proj")] = torch.cat([v, sd[kk], sd[vv]])
        elif k.endswith(".mlp.gate_proj.weight"):
            out[k.replace("gate_proj", "gate_up_proj")] = torch.cat([v, sd[k.replace("gate_proj", "up_proj")]])
        elif k.endswith(".mlp.up_proj.weight"):
            continue
        elif k.endswith(".mlp.experts.gate_up_proj"):  # transformers 5 fused experts [E, 2I, H]
            i = v.shape[1] // 2
            out[k.replace("gate_up_proj", "gate_proj")] = v[:, :i].contiguous()
            out[k.replace("gate_up_proj", "up_proj")] = v[:, i:].contiguous()
        else:
            out[k] = v
    return {"model": out, "optimizer": {"state": {"step": torch.tensor(3.0)}}}


@pytest.mark.parametrize("kind", ["llama", "qwen3moe"])
def test_veomni_to_hf(kind, e2e_env, e2e_tmp, mount, ckptfs_bin):
    model, cfg, ref, sd = _hf(kind, e2e_tmp, f"veomni-{kind}")
    ckpt = e2e_tmp / f"veomni-{kind}"
    _save_dcp(_veomni_native(sd, cfg), ckpt)
    _check_mount(mount, ckpt, ref, sd, e2e_tmp, f"veomni-{kind}", "veomni", ckptfs_bin)

def test_mirrors_base_model_split(e2e_env, e2e_tmp, mount, ckptfs_bin):
    """With a base model directory holding model.safetensors.index.json as
    assets, the mount uses the same file names and the same split: a drop-in
    replacement for the base model's weights."""
    model, cfg, _, sd = _hf("llama", e2e_tmp, "mirror-unused")
    base = e2e_tmp / "hf-mirror-base"
    model.save_pretrained(str(base), max_shard_size="100KB")
    want = json.loads((base / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(want.values())) > 1
    ckpt = e2e_tmp / "megatron-mirror"
    _save_dcp(_megatron_native(sd, cfg), ckpt)
    (ckpt / "metadata.json").write_text("{}")
    with mount(ckpt, e2e_tmp / "mnt-mirror", f"assets={base}") as m:
        got = json.loads((m / "model.safetensors.index.json").read_text())["weight_map"]
        files = sorted(p.name for p in m.glob("*.safetensors"))
    assert got == want
    assert files == sorted(set(want.values()))


def _titan_qwen3_native(sd, cfg):
    """HF Qwen3 / Qwen3-MoE (transformers 5 fused experts) -> TorchTitan layout."""
    import torch
    out = {"tok_embeddings.weight": sd["model.embed_tokens.weight"], "norm.weight": sd["model.norm.weight"]}
    ren = {"self_attn.q_proj.weight": "attention.wq.weight", "self_attn.k_proj.weight": "attention.wk.weight",
           "self_attn.v_proj.weight": "attention.wv.weight", "self_attn.o_proj.weight": "attention.wo.weight",
           "self_attn.q_norm.weight": "attention.q_norm.weight", "self_attn.k_norm.weight": "attention.k_norm.weight",
           "mlp.gate_proj.weight": "feed_forward.w1.weight", "mlp.up_proj.weight": "feed_forward.w3.weight",
           "mlp.down_proj.weight": "feed_forward.w2.weight", "input_layernorm.weight": "attention_norm.weight",
           "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate.weight": "moe.router.gate.weight"}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        for hf, ti in ren.items():
            if p + hf in sd:
                out[f"layers.{i}.{ti}"] = sd[p + hf]
        if p + "mlp.experts.gate_up_proj" in sd:
            gu = sd[p + "mlp.experts.gate_up_proj"]
            f = gu.shape[1] // 2
            out[f"layers.{i}.moe.routed_experts.inner_experts.w1_EFD"] = gu[:, :f].contiguous()
            out[f"layers.{i}.moe.routed_experts.inner_experts.w3_EFD"] = gu[:, f:].contiguous()
            out[f"layers.{i}.moe.routed_experts.inner_experts.w2_EDF"] = sd[p + "mlp.experts.down_proj"]
    if not cfg.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    return out


@pytest.mark.parametrize("kind", ["qwen3", "qwen3moe"])
def test_torchtitan_qwen3_to_hf(kind, e2e_env, e2e_tmp, mount, ckptfs_bin):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM
    model, cfg, ref, sd = _hf(kind, e2e_tmp, f"titanq-{kind}")
    ckpt = e2e_tmp / f"titanq-{kind}"
    _save_dcp(_titan_qwen3_native(sd, cfg), ckpt)
    r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt), "-o", f"assets={ref}"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "mapping: torchtitan-qwen3" in r.stdout, r.stdout + r.stderr
    with mount(ckpt, e2e_tmp / f"mnt-titanq-{kind}", f"assets={ref}") as m:
        loaded = AutoModelForCausalLM.from_pretrained(str(m))
        x = torch.arange(16).reshape(2, 8) % loaded.config.vocab_size
        with torch.no_grad():
            got = loaded(x).logits.clone()
        lsd = {k: v.detach().clone() for k, v in loaded.state_dict().items()}
        del loaded
        gc.collect()
    assert set(lsd) == set(sd)
    for k, v in sd.items():
        assert torch.equal(lsd[k], v), f"{k} differs after from_pretrained"
    with torch.no_grad():
        want = AutoModelForCausalLM.from_pretrained(str(ref))(x).logits
    assert torch.equal(got, want)


def test_torchtitan_ema_view(e2e_env, e2e_tmp, mount, ckptfs_bin):
    """TorchTitan EMA: ema.state.<fqn>.ema_params.<key> tensors are hidden by
    default and served under the HF names with -o view=ema (and -o ema_key
    when a checkpoint keeps several EMA copies)."""
    import torch
    from safetensors import safe_open
    model, cfg, ref, sd = _hf("llama", e2e_tmp, "titan-ema")
    native = _titan_native(sd, cfg)
    native.pop("freqs_cis")
    ema_sd = {k: (v * 0.5).contiguous() for k, v in sd.items()}
    ema_native = _titan_native(ema_sd, cfg)
    ema_native.pop("freqs_cis")
    for key in ("decay_0p999", "half_life_0p05"):
        for fqn, v in ema_native.items():
            native[f"ema.state.{fqn}.ema_params.{key}"] = v if key == "decay_0p999" else v * 2
    ckpt = e2e_tmp / "titan-ema"
    _save_dcp(native, ckpt)

    def served(*opts):
        with mount(ckpt, e2e_tmp / f"mnt-ema-{len(opts)}", f"assets={ref}", *opts) as m:
            out = {}
            with safe_open(str(m / "model.safetensors"), framework="pt") as s:
                for k in s.keys():
                    out[k] = s.get_tensor(k).clone()
        return out

    plain = served()
    assert all(torch.equal(plain[k], sd[k]) for k in plain) and set(plain) == set(sd)
    r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt), "-o", f"assets={ref}", "-o", "view=ema"],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "ema_key" in r.stderr, r.stderr
    ema = served("view=ema", "ema_key=decay_0p999")
    assert set(ema) == set(sd)
    for k, v in ema.items():
        assert torch.equal(v, ema_sd[k]), f"{k}: not the EMA copy"


def _fake_megatron_enums(monkeypatch):
    """Enum classes pickled under Megatron-LM's module names (the args of a
    real run hold ModelType and AttnBackend members), without Megatron."""
    import enum
    import sys
    import types
    made = {}
    for mod, cls, member in (("megatron.core.enums", "ModelType", "encoder_or_decoder"),
                             ("megatron.core.transformer.enums", "AttnBackend", "auto")):
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        E = enum.Enum(cls, {member: 1})
        E.__module__, E.__qualname__ = mod, cls
        setattr(sys.modules[mod], cls, E)
        made[cls] = E[member]
    return made


def _megatron_args(cfg, monkeypatch, **over):
    """argparse.Namespace as Megatron-LM keeps it in common.pt (a subset of
    its attributes, with the kinds a real run has: dtypes, enums, lists)."""
    import argparse
    import torch
    enums = _fake_megatron_enums(monkeypatch)
    nq = cfg.num_attention_heads
    a = dict(
        num_layers=cfg.num_hidden_layers, hidden_size=cfg.hidden_size, ffn_hidden_size=cfg.intermediate_size,
        num_attention_heads=nq, group_query_attention=cfg.num_key_value_heads != nq,
        num_query_groups=cfg.num_key_value_heads, kv_channels=getattr(cfg, "head_dim", None) or cfg.hidden_size // nq,
        padded_vocab_size=cfg.vocab_size + 8, vocab_size=None,
        untie_embeddings_and_output_weights=not cfg.tie_word_embeddings,
        num_experts=getattr(cfg, "num_experts", None), moe_ffn_hidden_size=getattr(cfg, "moe_intermediate_size", None),
        swiglu=True, normalization="RMSNorm", position_embedding_type="rope", qk_layernorm=False,
        params_dtype=torch.float32, model_type=enums["ModelType"], attention_backend=enums["AttnBackend"],
        data_path=["1.0", "/data/text_document"], lr=3e-4, seq_length=64, rampup_batch_size=None)
    a.update(over)
    return argparse.Namespace(**a)


def _export(ckptfs_bin, ckpt, out, *opts):
    o = [x for opt in opts for x in ("-o", opt)]
    return subprocess.run([str(ckptfs_bin), "export", "-q", str(ckpt), str(out), *o],
                          capture_output=True, text=True)


@pytest.mark.parametrize("kind,vocab_known,where", [("llama", False, "common.pt"), ("qwen3moe", True, "common.pt"),
                                                    ("llama", True, "common_state")])
def test_megatron_params_from_common_pt_args(kind, vocab_known, where, e2e_env, e2e_tmp, ckptfs_bin,
                                             monkeypatch):
    """Without a config.json the mapping parameters come from the training
    args Megatron-LM keeps in its common state (common.pt, or the
    common_state/shard_0_1 bytes item of the DCP payload): num_query_groups
    decides the QKV split (wrong args are refused), padded_vocab_size (or
    vocab_size when the args name it) the embedding rows; a config.json takes
    precedence."""
    import io
    import torch
    name = f"meg-args-{kind}-{where}"
    model, cfg, ref, sd = _hf(kind, e2e_tmp, name)
    native = _megatron_native(sd, cfg)
    ckpt = e2e_tmp / name
    _save_dcp(native, ckpt)
    (ckpt / "metadata.json").write_text(json.dumps(_MEGATRON_METADATA))

    def with_args(**over):
        common = {"args": _megatron_args(cfg, monkeypatch, **over), "checkpoint_version": 3.0, "iteration": 10}
        if where == "common.pt":
            torch.save(common, str(ckpt / "common.pt"))
            return
        # a ShardedObject as Megatron-Core's torch_dist strategy writes it: the list of
        # the shards' data torch.save'd into a BytesIO that its MCoreSavePlanner
        # (transform_object returns the object as is) writes as one raw bytes item
        import torch.distributed.checkpoint as dcp

        class RawBytesPlanner(dcp.DefaultSavePlanner):
            def transform_object(self, write_item, object):
                return object

        buf = io.BytesIO()
        torch.save([common], buf)
        buf.seek(0)
        torch.save({}, str(ckpt / "common.pt"))  # as Megatron-Core leaves it: no args
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dcp.save({**native, "common_state/shard_0_1": buf}, planner=RawBytesPlanner(),
                     storage_writer=dcp.FileSystemWriter(str(ckpt)))

    with_args(**({"vocab_size": cfg.vocab_size} if vocab_known else {}))
    r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    src = "common.pt" if where == "common.pt" else "common_state/shard_0_1"
    assert f"mapping: megatron-llama (parameters from the Megatron args in {src})" in r.stdout, r.stdout
    out = e2e_tmp / f"{name}-out"
    r = _export(ckptfs_bin, ckpt, out)
    assert r.returncode == 0, r.stderr
    want = _per_expert(sd)
    if not vocab_known:  # the args give only the padded vocabulary: its rows are served
        want["model.embed_tokens.weight"] = native["embedding.word_embeddings.weight"]
        want["lm_head.weight"] = native["output_layer.weight"]
    got = _saved(out)
    assert set(got) == set(want), sorted(set(got) ^ set(want))
    for k, t in got.items():
        assert torch.equal(t, want[k]), f"{k} differs"

    # the args decide the split: without GQA (or with one query group) the
    # checkpoint's QKV rows cannot be split and the mount is refused
    for bad in ({"group_query_attention": False}, {"num_query_groups": 1}):
        with_args(**bad)
        r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt)], capture_output=True, text=True)
        assert r.returncode == 1, (bad, r.stdout)
        assert "does not match the checkpoint" in r.stderr and "Megatron args" in r.stderr, r.stderr
    # a config.json wins over the args (common.pt is not even read)
    r = _export(ckptfs_bin, ckpt, e2e_tmp / f"{name}-out2", f"assets={ref}")
    assert r.returncode == 0, r.stderr
    got = _saved(e2e_tmp / f"{name}-out2")
    assert all(torch.equal(t, _per_expert(sd)[k]) for k, t in got.items()) and set(got) == set(_per_expert(sd))


def test_megatron_common_pt_outside_whitelist_is_refused(e2e_env, e2e_tmp, ckptfs_bin):
    """A common.pt whose pickle names a class outside the whitelist (here a
    __reduce__ calling os.system) is refused with a message naming it, and
    nothing is executed; -o assets or -o mapping=none do not read it."""
    import os
    import torch
    model, cfg, ref, sd = _hf("llama", e2e_tmp, "meg-evil")
    ckpt = e2e_tmp / "meg-evil"
    _save_dcp(_megatron_native(sd, cfg), ckpt)
    (ckpt / "metadata.json").write_text(json.dumps(_MEGATRON_METADATA))
    marker = e2e_tmp / "evil-ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"args": Evil()}, str(ckpt / "common.pt"))
    r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt)], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout
    assert "common.pt" in r.stderr and "system is outside the whitelist" in r.stderr, r.stderr
    assert not marker.exists()
    for opt in (f"assets={ref}", "mapping=none"):
        r = subprocess.run([str(ckptfs_bin), "inspect", str(ckpt), "-o", opt], capture_output=True, text=True)
        assert r.returncode == 0, (opt, r.stderr)
    assert not marker.exists()
