#!/usr/bin/env python3
"""Command-line behaviour without FUSE: usage errors, --help, assets
discovery next to the weights, -o dtype parsing, and inspect --explain.
TAP output; skips when the shared fixtures are absent."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("CKPTFS_BIN", os.path.join(REPO, "src", "ckptfs"))
FIX = os.environ.get("CKPTFS_FIXTURES", os.path.join(REPO, "..", "shared", "fixtures"))
n = failed = 0


def ok(cond, msg):
    global n, failed
    n += 1
    failed += not cond
    print(("ok" if cond else "not ok") + f" {n} - {msg}", flush=True)


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)


def write_common_pt(path, payload):
    """A common.pt laid out as torch.save writes it (stored zip records under
    common/), pickled by the standard library: no torch needed."""
    import zipfile
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("common/data.pkl", payload)
        z.writestr("common/byteorder", "little")
        z.writestr("common/version", "3\n")


def megatron_args_checks(tmp):
    """Megatron training args in common.pt, on a copy of a real Megatron
    fixture (a GPT: learned positions, LayerNorm biases, 12 hidden, QKV rows
    3 x 12 per layer, TP=2)."""
    import argparse
    import pickle
    ck = os.path.join(tmp, "ck")
    shutil.copytree(os.path.join(FIX, "dcp", "megatron-core0.9-tp2"), ck)

    def args(**kw):
        base = dict(num_layers=2, hidden_size=12, ffn_hidden_size=24, padded_vocab_size=128,
                    group_query_attention=False, num_query_groups=1, untie_embeddings_and_output_weights=True,
                    params_dtype=None, data_path=["1.0", "x"], lr=0.1)
        base.update(kw)
        write_common_pt(os.path.join(ck, "common.pt"),
                        pickle.dumps({"args": argparse.Namespace(**base), "iteration": 3}, protocol=2))

    args(num_attention_heads=2, kv_channels=6)
    r = run("inspect", ck)
    ok(r.returncode == 0 and "mapping: megatron-layers" in r.stdout,
       f"with args, a GPT (learned positions, LayerNorm biases) stays on megatron-layers ({r.stderr.strip()[:120]})")
    # a rule file whose parameters come from the args: they decide the QKV
    # split of the real stacked, TP-sharded tensor
    qkv = os.path.join(tmp, "qkv.json")
    with open(qkv, "w") as fp:
        json.dump({"megatron_args": {
                       "num_attention_heads": "num_attention_heads", "head_dim": "kv_channels",
                       "num_key_value_heads": "group_query_attention ? num_query_groups : num_attention_heads"},
                   "params": {"nq": "num_attention_heads", "ng": "num_key_value_heads", "hd": "head_dim",
                              "hpg": "nq / ng", "G": "(hpg + 2) * hd"},
                   "rules": [{"match": "^decoder\\.layers\\.self_attention\\.linear_qkv\\.weight$",
                              "unstack": ["L"], "out": "k.{L}",
                              "ops": [{"op": "groups", "count": "ng", "stride": "G", "offset": "hpg * hd",
                                       "size": "hd"}]},
                             {"match": "^(.*)$", "out": "{$1}"}]}, fp)
    for kw, box in (({"num_attention_heads": 2, "kv_channels": 6}, "[1:2, 6:12, 0:12] and 1 more boxes"),
                    ({"num_attention_heads": 4, "kv_channels": 6, "group_query_attention": True},
                     "[1:2, 24:30, 0:12]\n")):
        args(**kw)
        r = run("inspect", ck, "-o", f"mapping={qkv}", "--explain=k.1")
        ok(r.returncode == 0 and "parameters from the Megatron args in common.pt" in r.stdout and
           f"decoder.layers.self_attention.linear_qkv.weight{box}" in r.stdout,
           f"args {kw} decide the QKV split ({r.stderr.strip()[:120]})")
    args(num_attention_heads=4, kv_channels=6)
    r = run("inspect", ck, "-o", f"mapping={qkv}")
    ok(r.returncode == 1 and "Megatron args" in r.stderr and "do not tile" in r.stderr,
       f"args that do not fit the checkpoint are refused ({r.stderr.strip()[:160]})")
    marker = os.path.join(tmp, "ran")
    evil = (b"\x80\x02}q\x00X\x04\x00\x00\x00argsq\x01cposix\nsystem\nq\x02X" +
            len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode() +
            b"\x85q\x03Rq\x04s.")
    write_common_pt(os.path.join(ck, "common.pt"), evil)
    r = run("inspect", ck)
    ok(r.returncode == 1 and "posix.system is outside the whitelist" in r.stderr and "common.pt" in r.stderr
       and not os.path.exists(marker), f"a common.pt naming os.system is refused, nothing runs ({r.stderr.strip()[:160]})")
    r = run("inspect", ck, "-o", "mapping=none")
    ok(r.returncode == 0, "-o mapping=none does not read common.pt")


def main():
    src = os.path.join(FIX, "dcp", "torch2.6-dtensor-2ranks")
    hf = os.path.join(FIX, "hf", "verl-tiny-llama-bf16")
    if not os.path.isdir(src):
        print("1..0 # SKIP shared fixtures are absent")
        return 0
    r = run("--help")
    ok(r.returncode == 0 and "dtype=" in r.stdout and "mapping=" in r.stdout, "--help lists the options")
    r = run("inspect")
    ok(r.returncode == 2 and "expected SRC" in r.stderr, f"missing SRC is a usage error ({r.stderr.strip()})")
    r = run("inspect", src, "-o", "dtype=int4")
    ok(r.returncode == 2 and "expected bf16, fp16, fp32, orig or auto" in r.stderr,
       f"an unknown dtype is refused ({r.stderr.strip()})")
    r = run("inspect", src, "-o", "max_shard_size=lots")
    ok(r.returncode == 2 and "max_shard_size" in r.stderr, "a bad size is refused")
    r = run("export", src, "-o", "bogus")
    ok(r.returncode == 2, f"unknown option refused by export ({r.stderr.strip()})")
    with tempfile.TemporaryDirectory(prefix="ckptfs-cli-") as tmp:
        step = os.path.join(tmp, "run", "step-7")
        ck = os.path.join(step, "ckpt")
        shutil.copytree(src, ck)
        r = run("inspect", ck)
        ok(r.returncode == 0 and "assets: none (weights only" in r.stdout,
           "no config anywhere: inspect says weights only")
        os.makedirs(os.path.join(step, "huggingface"))
        for f in ("config.json", "generation_config.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(hf, f), os.path.join(step, "huggingface", f))
        with open(os.path.join(ck, "metadata.json"), "w") as fp:
            fp.write("{}")
        out = os.path.join(tmp, "out")
        r = run("export", "-q", ck, out)
        files = sorted(os.listdir(out)) if r.returncode == 0 else []
        ok(files == ["config.json", "generation_config.json", "model.safetensors",
                     "tokenizer_config.json"],
           f"veRL-style huggingface/ beside the step is found and served ({files})")
        same = all(open(os.path.join(out, f), "rb").read() ==
                   open(os.path.join(step, "huggingface", f), "rb").read()
                   for f in files if f.endswith(".json"))
        ok(same, "assets are served byte for byte")
        out2 = os.path.join(tmp, "out2")
        r = run("export", "-q", ck, out2, "-o", "dtype=fp16")
        cfg = json.load(open(os.path.join(out2, "config.json"))) if r.returncode == 0 else {}
        orig = json.load(open(os.path.join(hf, "config.json")))
        ok(cfg.get("torch_dtype") == "float16" and
           {k: v for k, v in cfg.items() if k != "torch_dtype"} ==
           {k: v for k, v in orig.items() if k != "torch_dtype"},
           "dtype=fp16 rewrites only torch_dtype in config.json")
        r = run("inspect", ck, "-o", "dtype=auto", "--tensors")
        ok(r.returncode == 0 and " BF16 [5, 4]" in r.stdout,
           "dtype=auto follows the config's torch_dtype (bfloat16)")
    with tempfile.TemporaryDirectory(prefix="ckptfs-map-") as tmp:
        def rules(name, body):
            path = os.path.join(tmp, name)
            with open(path, "w") as fp:
                json.dump(body, fp)
            return path
        mine = rules("mine.json", {"rules": [{"match": "^w_(row|col)$", "out": "renamed.{$1}.weight"},
                                             {"match": "^(.*)$", "out": "{$1}"}]})
        r = run("inspect", src, "-o", f"mapping={mine}", "--tensors")
        ok(r.returncode == 0 and "renamed.row.weight" in r.stdout and "renamed.col.weight" in r.stdout
           and "  tr " in r.stdout, "a user rule file renames with captures (-o mapping=FILE)")
        arith = rules("arith.json", {"rules": [
            {"match": "^lst\\.([0-9]+)$", "out": "shifted.{$1 * 10 + 3}"},
            {"match": "^w_one$", "out": "one_squeezed", "ops": [{"op": "squeeze"}], "shape": [4]},
            {"match": "^(.*)$", "out": "{$1}"}]})
        r = run("inspect", src, "-o", f"mapping={arith}", "--tensors")
        ok(r.returncode == 0 and "shifted.3 " in r.stdout and "shifted.13 " in r.stdout and
           "one_squeezed  BF16 [4]" in r.stdout,
           "templates do arithmetic on captures; squeeze drops size-1 dims")
        cond = rules("cond.json", {"rules": [
            {"match": "^lst\\.(1)$", "out": "c.{$1 == 1 ? 7 : nosuch}"},
            {"match": "^lst\\.(0)$", "out": "c.{nosuch ?? $1 > 0 ? 8 : 9}"},
            {"match": "^(.*)$", "out": "{$1}"}]})
        r = run("inspect", src, "-o", f"mapping={cond}", "--tensors")
        ok(r.returncode == 0 and "  c.7 " in r.stdout and "  c.9 " in r.stdout,
           f"c ? a : b picks a branch; an undefined name in the branch not taken is harmless ({r.stderr.strip()[:100]})")
        cap = rules("capture.json", {"rules": [
            {"match": "^(w_row|lst\\.([0-9]+))$", "unstack": ["I"], "from_capture": {"I": 2},
             "out": "u.{I}.{$1}"},
            {"match": "^(.*)$", "out": "{$1}"}]})
        r = run("inspect", src, "-o", f"mapping={cap}", "--tensors")
        ok(r.returncode == 0 and "  u.4.w_row  F32 [4] " in r.stdout and "  u.1.lst.1  F32 [1] " in r.stdout
           and "u.0.lst.1" not in r.stdout,
           f"from_capture: the index comes from the name when captured, else from unstacking ({r.stderr.strip()[:100]})")
        rules("base.json", {"params": {"k": 3, "j": 1},
                            "rules": [{"match": "^w_(row|col)$", "out": "base.{$1}.{k}"},
                                      {"match": "^(.*)$", "out": "{$1}"}]})
        child = rules("child.json", {"extends": "base.json", "params": {"k": 5},
                                     "rules": [{"match": "^w_col$", "out": "child.col.{k + j}"}]})
        r = run("inspect", src, "-o", f"mapping={child}", "--tensors")
        ok(r.returncode == 0 and "  child.col.6 " in r.stdout and "  base.row.5 " in r.stdout
           and "  tr " in r.stdout,
           f"extends: own rules first, then the base's; own params override ({r.stderr.strip()[:100]})")
        esc = rules("escape.json", {"extends": "../base.json", "rules": [{"match": "x", "drop": True}]})
        r = run("inspect", src, "-o", f"mapping={esc}")
        ok(r.returncode == 1 and "same directory" in r.stderr, f"extends stays in its directory ({r.stderr.strip()[:100]})")
        sys.path.insert(0, os.path.join(REPO, "tests", "golden"))
        import dcp_ref
        a, b = os.path.join(tmp, "exp-a"), os.path.join(tmp, "exp-b")
        run("export", "-q", src, a, "-o", f"mapping={arith}")
        run("export", "-q", src, b)
        _, ta = dcp_ref.read_safetensors(os.path.join(a, "model.safetensors"))
        _, tb = dcp_ref.read_safetensors(os.path.join(b, "model.safetensors"))
        ok(ta["one_squeezed"][2] == tb["w_one"][2] and ta["shifted.13"][2] == tb["lst.1"][2],
           "renamed and squeezed tensors serve the same bytes")
        tr = rules("transpose.json", {"rules": [
            {"match": "^(w_row|w_col|tr)$", "out": "{$1}.T", "ops": [{"op": "transpose"}]},
            {"match": "^(.*)$", "out": "{$1}"}]})
        c = os.path.join(tmp, "exp-t")
        r = run("export", "-q", src, c, "-o", f"mapping={tr}")
        _, tc = dcp_ref.read_safetensors(os.path.join(c, "model.safetensors")) if r.returncode == 0 else (0, {})

        def transposed(entry):
            dt, shape, data = entry
            es = len(data) // (shape[0] * shape[1])
            rows, cols = shape
            return b"".join(data[(r_ * cols + c_) * es:(r_ * cols + c_ + 1) * es]
                            for c_ in range(cols) for r_ in range(rows))
        good = r.returncode == 0 and all(
            tc[f"{k}.T"][1] == tuple(reversed(tb[k][1])) and tc[f"{k}.T"][2] == transposed(tb[k])
            for k in ("w_row", "w_col", "tr"))
        ok(good, f"transpose serves the element transpose (row chunks, column chunks, strided item) ({r.stderr.strip()})")
        cat = rules("concat.json", {"rules": [
            {"match": "^lst\\.0$", "concat": ["lst.1"], "out": "lst"},
            {"match": "^(.*)$", "out": "{$1}"}]})
        d = os.path.join(tmp, "exp-cat")
        r = run("export", "-q", src, d, "-o", f"mapping={cat}")
        _, td = dcp_ref.read_safetensors(os.path.join(d, "model.safetensors")) if r.returncode == 0 else (0, {})
        ok(r.returncode == 0 and "lst.1" not in td and td["lst"][1] == (2,) and
           td["lst"][2] == tb["lst.0"][2] + tb["lst.1"][2],
           f"concat joins sources along dim 0 and consumes them ({r.stderr.strip()})")
        bad = rules("badcat.json", {"rules": [{"match": "^w_row$", "concat": ["w_col"], "out": "x"},
                                              {"match": "^(.*)$", "out": "{$1}"}]})
        r = run("inspect", src, "-o", f"mapping={bad}")
        ok(r.returncode == 1 and "cannot be concatenated" in r.stderr,
           f"concat of tensors of other dtypes is refused ({r.stderr.strip()[:100]})")
        partial = rules("partial.json", {"rules": [{"match": "^w_row$", "out": "row"}]})
        r = run("inspect", src, "-o", f"mapping={partial}")
        ok(r.returncode == 1 and "matched by no rule" in r.stderr and "mapping_strict=0" in r.stderr,
           f"a source no rule matches is refused ({r.stderr.strip()[:120]})")
        r = run("inspect", src, "-o", f"mapping={partial},mapping_strict=0", "--tensors")
        ok(r.returncode == 0 and "  row " in r.stdout and "no rule of mapping" in r.stdout,
           "mapping_strict=0 leaves unmatched sources out and lists them")
        badre = rules("badre.json", {"rules": [{"match": "^w_(row$", "out": "x"}]})
        r = run("inspect", src, "-o", f"mapping={badre}")
        ok(r.returncode == 1 and "bad regex" in r.stderr, f"a bad regex is refused ({r.stderr.strip()[:100]})")
        needs = rules("needs.json", {"rules": [{"match": "^(.*)$", "out": "{$1}", "shape": ["hidden_size"]}]})
        r = run("inspect", src, "-o", f"mapping={needs}")
        ok(r.returncode == 1 and "needs 'hidden_size'" in r.stderr,
           f"a parameter the config lacks is named ({r.stderr.strip()[:120]})")
        split = rules("split.json", {"rules": [{"match": "^w_row$", "out": "x",
                                               "ops": [{"op": "slice", "dim": 0, "stop": 9}]},
                                              {"match": "^(.*)$", "out": "{$1}"}]})
        r = run("inspect", src, "-o", f"mapping={split}")
        ok(r.returncode == 1 and "out of range" in r.stderr, f"an impossible split is refused ({r.stderr.strip()[:120]})")
    with tempfile.TemporaryDirectory(prefix="ckptfs-run-") as tmp:
        for step in ("global_step_10", "global_step_20"):
            shutil.copytree(src, os.path.join(tmp, step, "model", "ckpt"))
        open(os.path.join(tmp, "global_step_10", "checkpoint_manifest.json"), "w").close()
        r = run("inspect", tmp)
        ok(r.returncode == 0 and "global_step_10" in r.stdout and "10 tensors" in r.stdout and
           "no checkpoint_manifest.json" in r.stdout and "latest: global_step_10" in r.stdout,
           "run root: a VeOmni step without its completion marker is hidden")
        r = run("export", tmp, os.path.join(tmp, "out"))
        ok(r.returncode == 2 and "run root" in r.stderr, "export of a run root asks for one step")
    with tempfile.TemporaryDirectory(prefix="ckptfs-runcfg-") as tmp:
        # assets named by run configs: the YAML is read by ckptfs's own small
        # parser, so nesting, quotes and comments are exercised here
        it = os.path.join(tmp, "run", "iter_0000005")
        shutil.copytree(src, it)
        base = os.path.join(tmp, "base model")
        shutil.copytree(hf, base)
        yml = os.path.join(it, "run_config.yaml")
        with open(yml, "w") as fp:
            fp.write("# Megatron-Bridge\nmodel:\n  hidden_size: 64\n  hf_model_id: ../../missing  # old\n"
                     "  extra_checkpoint_metadata:\n    hf_model_id: \"../../base model\"\n"
                     "tokenizer:\n  hf_model_id: /etc\n")
        r = run("inspect", it)
        ok(r.returncode == 0 and f"assets: {os.path.realpath(base)} (model.extra_checkpoint_metadata."
           f"hf_model_id in {os.path.realpath(yml)})" in r.stdout and "config.json" in r.stdout,
           "run_config.yaml: model.extra_checkpoint_metadata.hf_model_id is used " +
           ("" if r.returncode == 0 else r.stderr.strip()[:200]))
        with open(yml, "w") as fp:
            fp.write("model:\n  hf_model_id: ../../missing\ntokenizer:\n  hf_model_id: /etc\n")
        r = run("inspect", it)
        ok(r.returncode == 0 and "assets: none" in r.stdout and
           "model.hf_model_id names '../../missing', which is not a directory here" in r.stderr,
           f"run_config.yaml naming no directory: reported, no assets ({r.stderr.strip()[:200]})")
        os.remove(yml)
        with open(os.path.join(tmp, "run", "config.json"), "w") as fp:
            json.dump({"job": {"dump_folder": "."}, "training": {"steps": 5},
                       "model": {"hf_assets_path": "../base model"}}, fp)
        r = run("inspect", it)
        ok(r.returncode == 0 and f"(model.hf_assets_path in {os.path.realpath(tmp)}/run/config.json)"
           in r.stdout, "TorchTitan job config in the run root: model.hf_assets_path " +
           ("" if r.returncode == 0 else r.stderr.strip()[:200]))
        out = os.path.join(tmp, "out")
        r = run("export", "-q", it, out)
        ok(r.returncode == 0 and open(os.path.join(out, "config.json"), "rb").read() ==
           open(os.path.join(hf, "config.json"), "rb").read(),
           "the run config is not served as config.json; the base model's is, byte for byte")
    # JSON files that are FIFOs (an index, a dtype mapping, a run config) never block
    with tempfile.TemporaryDirectory() as tmp:
        it = os.path.join(tmp, "ckpt")
        shutil.copytree(src, it)
        os.makedirs(os.path.join(it, ".hf_metadata"))
        os.mkfifo(os.path.join(it, ".hf_metadata", "fqn_to_dtype_mapping.json"))
        os.mkfifo(os.path.join(tmp, "config.json"))
        assets = os.path.join(tmp, "assets")
        shutil.copytree(hf, assets)
        os.remove(os.path.join(assets, "config.json"))
        os.mkfifo(os.path.join(assets, "config.json"))
        os.mkfifo(os.path.join(assets, "model.safetensors.index.json"))
        try:
            r1 = run("inspect", it)
            r2 = subprocess.run([BIN, "inspect", it, "-o", "assets=" + assets, "-o", "dtype=auto"],
                                capture_output=True, text=True, timeout=20)
            done = r1.returncode == 0 and r2.returncode == 0
        except subprocess.TimeoutExpired:
            done = False
        ok(done, "FIFOs named config.json, model.safetensors.index.json and "
           "fqn_to_dtype_mapping.json are skipped, never read (no hang)")
    with tempfile.TemporaryDirectory(prefix="ckptfs-margs-") as tmp:
        megatron_args_checks(tmp)
    r = run("inspect", os.path.join(FIX, "dcp", "megatron-core0.9-tp2"),
            "--explain=decoder.layers.1.self_attention.linear_qkv.weight")
    ok(r.returncode == 0 and "mapping: megatron-layers" in r.stdout and
       "decoder.layers.self_attention.linear_qkv.weight[1:2, 0:36, 0:12]" in r.stdout,
       "--explain shows the box of the stacked source")
    print(f"1..{n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
