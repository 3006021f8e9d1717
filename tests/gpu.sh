#!/bin/sh
# GPU tier: with a ckptfs built with --enable-cuda on a machine with an NVIDIA
# GPU, `export -o dtype=X,gpu=on` must equal the CPU export byte for byte, for
# fp32 -> bf16 / fp16 and bf16 -> fp32 over large random tensors (NaNs,
# infinities, subnormals included), with the work really done on the GPU (no
# fallback warning).  Skipped elsewhere (CI has no GPU).
. "$(dirname "$0")/env.sh"
if ! "$CKPTFS_BIN" --version 2>/dev/null | grep -q CUDA; then
	echo "1..0 # SKIP ckptfs was built without CUDA (./configure --enable-cuda)"
	exit 0
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
	echo "1..0 # SKIP no NVIDIA GPU here"
	exit 0
fi
run_tap "$CKPTFS_PYTHON" - <<'PY'
import os, random, struct, json, subprocess, sys, tempfile
BIN = os.environ["CKPTFS_BIN"]
n = 0
fail = 0
def ok(c, m):
    global n, fail
    n += 1
    fail += not c
    print(("ok" if c else "not ok") + f" {n} - {m}", flush=True)
with tempfile.TemporaryDirectory() as w:
    for dt, es in (("F32", 4), ("BF16", 2)):
        src = os.path.join(w, "src-" + dt)
        os.mkdir(src)
        rnd = random.Random(5)
        hdr, blobs, off = {}, [], 0
        for i, rows in enumerate((4096, 3000, 17)):
            data = rnd.randbytes(rows * 1024 * es)
            hdr[f"t{i}.weight"] = {"dtype": dt, "shape": [rows, 1024], "data_offsets": [off, off + len(data)]}
            blobs.append(data)
            off += len(data)
        h = json.dumps(hdr).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(src, "model.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
        for to in (("bf16", "fp16") if dt == "F32" else ("fp32",)):
            a, b = os.path.join(w, f"cpu-{dt}-{to}"), os.path.join(w, f"gpu-{dt}-{to}")
            r1 = subprocess.run([BIN, "export", "-q", src, a, "-o", f"dtype={to}"], capture_output=True, text=True)
            r2 = subprocess.run([BIN, "export", src, b, "-o", f"dtype={to},gpu=on"], capture_output=True, text=True)
            same = r1.returncode == 0 and r2.returncode == 0 and \
                open(os.path.join(a, "model.safetensors"), "rb").read() == open(os.path.join(b, "model.safetensors"), "rb").read()
            ok(same and "gpu=on" not in r2.stderr,
               f"export {dt} -> {to} with gpu=on equals the CPU export ({r2.stderr.strip()[-200:]})")
print(f"1..{n}")
sys.exit(1 if fail else 0)
PY
