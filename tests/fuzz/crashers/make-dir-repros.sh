#!/bin/sh
# make-dir-repros.sh OUTDIR [FIXTURES] - builds the reproducers of the
# ckptfs problems that need a whole directory rather than one input file
# (so the fuzz harnesses cannot replay them), and prints how to observe each.
# Only stdlib python3 is needed; FIXTURES defaults to ../shared/fixtures
# beside the repository.  Nothing here is run by make check.
set -eu
out=${1:?usage: make-dir-repros.sh OUTDIR [FIXTURES]}
here=$(cd "$(dirname "$0")" && pwd)
fix=${2:-$here/../../../../shared/fixtures}
src=$fix/dcp/torch2.6-dtensor-2ranks
[ -f "$src/.metadata" ] || { echo "no fixture $src" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# 1. asset discovery follows symlinks out of the checkpoint (SECURITY.md 6.2)
d=$out/asset-symlink
rm -rf "$d" && mkdir -p "$d"
cp "$src/.metadata" "$src"/*.distcp "$d/" && chmod u+w "$d"/*
echo '{"model_type": "llama"}' >"$d/config.json"
ln -s /etc/passwd "$d/vocab.txt"

# 2. SIGFPE in a mapping expression from config.json (SECURITY.md 6.5)
d=$out/expr-sigfpe
rm -rf "$d" && mkdir -p "$d"
python3 - "$d" <<'PY'
import json, struct, sys
d = sys.argv[1]
hdr, data = {}, b""
for n in ("tok_embeddings.weight", "layers.0.attention.wq.weight",
          "layers.0.attention.wk.weight", "layers.0.attention.wv.weight"):
    hdr[n] = {"dtype": "F32", "shape": [4, 4], "data_offsets": [len(data), len(data) + 64]}
    data += bytes(64)
js = json.dumps(hdr).encode()
open(d + "/model.safetensors", "wb").write(struct.pack("<Q", len(js)) + js + data)
json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "hidden_size": -9223372036854775808, "num_attention_heads": -1,
           "num_key_value_heads": 1, "vocab_size": 4}, open(d + "/config.json", "w"))
PY

# 3. shard offsets near 2^63: an unreadable shard satisfies coverage, the
#    element it claims is served as 0 without allow_holes (SECURITY.md 6.1)
d=$out/shard-offset-overflow
rm -rf "$d" && mkdir -p "$d"
python3 - "$d" <<'PY'
import json, struct, sys
d = sys.argv[1]
def st(name, shape, offs, data):
    hdr = {"__metadata__": {"DCP_SHARDING_INFO": json.dumps({"t": {"saved_offsets": offs}})},
           "t": {"dtype": "F32", "shape": shape, "data_offsets": [0, len(data)]}}
    js = json.dumps(hdr, separators=(",", ":")).encode()
    open(f"{d}/{name}", "wb").write(struct.pack("<Q", len(js)) + js + data)
st("a.safetensors", [3], [0], struct.pack("<3f", 1, 2, 3))
st("b.safetensors", [1], [2**63 - 1], struct.pack("<f", 42))
st("c.safetensors", [0], [4], b"")
PY

# 4. run root whose latest_checkpointed_iteration.txt is a FIFO (SECURITY.md 6.4)
d=$out/run-fifo
rm -rf "$d" && mkdir -p "$d/step-1"
cp "$src/.metadata" "$src"/*.distcp "$d/step-1/" && chmod u+w "$d/step-1"/*
mkfifo "$d/latest_checkpointed_iteration.txt"

cat <<EOF2
reproducers in $out:
  asset-symlink:         ckptfs export -q $out/asset-symlink OUT; cat OUT/vocab.txt   (a copy of /etc/passwd)
  expr-sigfpe:           ckptfs inspect $out/expr-sigfpe -o mapping_strict=0          (killed by SIGFPE)
  shard-offset-overflow: ckptfs export -q $out/shard-offset-overflow OUT              (accepted; t = [1, 2, 3, 0])
  run-fifo:              ckptfs $out/run-fifo MNT -f & ls -l MNT                       (ls hangs; kill it with SIGKILL)
EOF2
