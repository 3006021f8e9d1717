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


def _megatron_native(sd, cfg, pad_vocab=8):
    """HF Llama/Qwen state dict -> Megatron-Core torch_dist layout (stacked
    layers, GQA-interleaved QKV, [gate; up] fc1, padded vocabulary)."""
    import torch
    L = cfg.num_hidden_layers
    nq, ng = cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // nq
    hpg = nq // ng

    def pad(w):
        extra = torch.randn(pad_vocab, w.shape[1], generator=torch.Generator().manual_seed(1))
        return torch.cat([w, extra.to(w.dtype)])

    def qkv(i, kind):
        q = sd[f"model.layers.{i}.self_attn.q_proj.{kind}"]
        k = sd[f"model.layers.{i}.self_attn.k_proj.{kind}"]
        v = sd[f"model.layers.{i}.self_attn.v_proj.{kind}"]
        parts = []
        for g in range(ng):
            parts += [q[g * hpg * hd:(g + 1) * hpg * hd], k[g * hd:(g + 1) * hd], v[g * hd:(g + 1) * hd]]
        return torch.cat(parts)

    def stack(fn):
        return torch.stack([fn(i) for i in range(L)]).contiguous()

    p = "model.layers.{}."
    if p.format(0) + "mlp.experts.gate_up_proj" in sd:  # Qwen3-MoE: grouped experts, router
        moe = {
            "decoder.layers.pre_mlp_layernorm.weight":
                stack(lambda i: sd[p.format(i) + "post_attention_layernorm.weight"]),
            "decoder.layers.mlp.router.weight": stack(lambda i: sd[p.format(i) + "mlp.gate.weight"]),
            "decoder.layers.mlp.experts.experts.linear_fc1.weight":
                stack(lambda i: sd[p.format(i) + "mlp.experts.gate_up_proj"]),
            "decoder.layers.mlp.experts.experts.linear_fc2.weight":
                stack(lambda i: sd[p.format(i) + "mlp.experts.down_proj"]),
        }
    else:
        moe = None
    out = {
        "embedding.word_embeddings.weight": pad(sd["model.embed_tokens.weight"]),
        "decoder.final_layernorm.weight": sd["model.norm.weight"],
        "decoder.layers.self_attention.linear_qkv.layer_norm_weight":
            stack(lambda i: sd[p.format(i) + "input_layernorm.weight"]),
        "decoder.layers.self_attention.linear_qkv.weight": stack(lambda i: qkv(i, "weight")),
        "decoder.layers.self_attention.linear_proj.weight":
            stack(lambda i: sd[p.format(i) + "self_attn.o_proj.weight"]),
        "decoder.layers.self_attention.linear_qkv._extra_state": torch.zeros(4, dtype=torch.uint8),
    }
    if moe:
        out.update(moe)
    else:
        out.update({
            "decoder.layers.mlp.linear_fc1.layer_norm_weight":
                stack(lambda i: sd[p.format(i) + "post_attention_layernorm.weight"]),
            "decoder.layers.mlp.linear_fc1.weight": stack(lambda i: torch.cat(
                [sd[p.format(i) + "mlp.gate_proj.weight"], sd[p.format(i) + "mlp.up_proj.weight"]])),
            "decoder.layers.mlp.linear_fc2.weight": stack(lambda i: sd[p.format(i) + "mlp.down_proj.weight"]),
        })
    if f"model.layers.0.self_attn.q_proj.bias" in sd:
        out["decoder.layers.self_attention.linear_qkv.bias"] = stack(lambda i: qkv(i, "bias"))
    if f"model.layers.0.self_attn.q_norm.weight" in sd:
        out["decoder.layers.self_attention.q_layernorm.weight"] = stack(lambda i: sd[p.format(i) + "self_attn.q_norm.weight"])
        out["decoder.layers.self_attention.k_layernorm.weight"] = stack(lambda i: sd[p.format(i) + "self_attn.k_norm.weight"])
    if not cfg.tie_word_embeddings:
        out["output_layer.weight"] = pad(sd["lm_head.weight"])
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


def _check_mount(mount, ckpt, ref, sd, tmp, name, want_mapping, ckptfs_bin):
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
    sd = _per_expert(sd)
    want_names = {k for k in sd if not (k == "lm_head.weight" and "lm_head.weight" not in served
                                         and json.loads((ref / "config.json").read_text()).get("tie_word_embeddings"))}
    assert set(served) == want_names, (sorted(set(served) ^ want_names))
    for k, t in served.items():
        assert t.dtype == sd[k].dtype and torch.equal(t, sd[k]), f"{k} differs from the HF model"
    ref_model = AutoModelForCausalLM.from_pretrained(str(ref))
    with torch.no_grad():
        want = ref_model(x).logits
    assert torch.equal(got, want), "logits differ from the HF model's"


@pytest.mark.parametrize("kind", ["llama", "llama-tied", "qwen2", "qwen3", "qwen3moe"])
def test_megatron_to_hf(kind, e2e_env, e2e_tmp, mount, ckptfs_bin):
    model, cfg, ref, sd = _hf(kind, e2e_tmp, f"meg-{kind}")
    ckpt = e2e_tmp / f"megatron-{kind}"
    _save_dcp(_megatron_native(sd, cfg), ckpt)
    (ckpt / "metadata.json").write_text(json.dumps(
        {"sharded_backend": "torch_dist", "sharded_backend_version": 1,
         "common_backend": "torch", "common_backend_version": 1}))
    _check_mount(mount, ckpt, ref, sd, e2e_tmp, f"meg-{kind}", "megatron-llama", ckptfs_bin)


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
