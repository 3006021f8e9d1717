#!/usr/bin/env bash
# The main job on a small demo checkpoint: installs the build dependencies and
# the Python venv (torch + transformers from PyPI), builds ckptfs, writes a
# tiny Llama checkpoint with real torch.distributed.checkpoint from 2 ranks
# (DTensor Shard(0), keys "model.*"), then mounts it, lists it, reads a
# tensor through safetensors, loads it with transformers' from_pretrained,
# and unmounts.  Without /dev/fuse it exports the same files instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/install-deps.sh
venv=$(bash contrib/setup-test-venv.sh | tail -n 1)
py="$venv/bin/python"
bash contrib/build.sh

demo=${CKPTFS_DEMO_DIR:-$PWD/demo}
rm -rf "$demo"
mkdir -p "$demo"
echo "== writing a 2-rank DCP checkpoint with torch into $demo/ckpt" >&2
"$py" tests/e2e/make_ckpt.py llama-dtensor-shard0-2 "$demo/ckpt" --hf-out "$demo/base" >&2
ls -l "$demo/ckpt"

./src/ckptfs inspect "$demo/ckpt" -o assets="$demo/base"

if [ -e /dev/fuse ] && command -v fusermount3 >/dev/null; then
	mkdir -p "$demo/mnt"
	echo "== mounting" >&2
	start=$(date +%s%N)
	./src/ckptfs "$demo/ckpt" "$demo/mnt" -o assets="$demo/base"
	echo "mounted in $(( ($(date +%s%N) - start) / 1000000 )) ms" >&2
	trap 'fusermount3 -u "$demo/mnt" 2>/dev/null || true' EXIT
	view="$demo/mnt"
else
	echo "== /dev/fuse is missing: exporting instead of mounting" >&2
	./src/ckptfs export "$demo/ckpt" "$demo/export" -o assets="$demo/base"
	view="$demo/export"
fi
ls -l "$view"
"$py" - "$view" "$demo/base" <<'PY'
import sys, torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM
view, base = sys.argv[1], sys.argv[2]
with safe_open(f"{view}/model.safetensors", framework="pt") as f:
    name = "model.embed_tokens.weight"
    print(f"{name}: {tuple(f.get_tensor(name).shape)} {f.get_tensor(name).dtype}")
ref = torch.load(f"{base}/reference.pt")
model = AutoModelForCausalLM.from_pretrained(view)
same = all(torch.equal(model.state_dict()[k], v) for k, v in ref.items())
logits = model(torch.arange(16).reshape(2, 8) % model.config.vocab_size).logits
print("from_pretrained: %d tensors, identical to the trained model: %s, logits %s"
      % (len(ref), same, tuple(logits.shape)))
sys.exit(0 if same else 1)
PY
if [ "$view" = "$demo/mnt" ]; then
	fusermount3 -u "$demo/mnt"
	trap - EXIT
	echo "== unmounted" >&2
fi
