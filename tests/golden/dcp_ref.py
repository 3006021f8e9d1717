"""Independent reference reader for PyTorch Distributed Checkpoints (DCP).

Standard library only (``zstandard`` is used when importable, for
``stream.zstd/1`` items).  It shares no code with the C implementation and
follows doc/dcp-format.md directly.  Pickles are loaded with an unpickler that
never imports anything: every global resolves to an inert stub or to a small
local function, and anything not on the whitelist is refused.

Public API:
  load(dirpath) -> Checkpoint(.tensors {fqn: RefTensor}, .bytes_keys, .storage)
  default_names(fqns) -> {output_name: fqn}
  safetensors_dtype(torch_dtype_name) -> "F32", ...
  read_safetensors(path) -> (metadata, {name: (dtype, shape, bytes)})
"""
import collections
import glob
import io
import itertools
import json
import math
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field

ELEM_SIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e8m0fnu": 1,
    "uint16": 2, "uint32": 4, "uint64": 8, "complex64": 8, "complex128": 16,
}

_ST_DTYPE = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
    "bool": "BOOL", "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "float8_e8m0fnu": "F8_E8M0", "uint16": "U16", "uint32": "U32",
    "uint64": "U64", "complex64": "C64",
}
# dtypes the metadata may name but this reference cannot assemble
OTHER_DTYPES = {"complex32", "float8_e4m3fnuz", "float8_e5m2fnuz", "float4_e2m1fn_x2",
                "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "bits8", "bits16"}
ST_ELEM_SIZE = {_ST_DTYPE[k]: ELEM_SIZE[k] for k in _ST_DTYPE}

# torch.<Xxx>Storage -> dtype (torch.storage._dtype_to_storage_type_map)
_STORAGE_DTYPE = {
    "DoubleStorage": "float64", "FloatStorage": "float32",
    "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
}

NON_MODEL_ROOTS = {"optimizer", "optim", "lr_scheduler", "dataloader", "train_state"}


class RefSkip(Exception):
    """An optional module needed for this checkpoint is missing."""


class RefError(Exception):
    """The checkpoint is malformed or unsupported."""


# --------------------------------------------------------------------------
# Inert pickle objects

class Stub:
    """Instance of a whitelisted class; never runs any of the real code."""
    _module = "?"
    _qualname = "?"

    def __new__(cls, *args, **kwargs):          # NEWOBJ and REDUCE
        obj = object.__new__(cls)
        obj._args = args
        obj._state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):              # BUILD
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:                                   # TensorProperties 5-tuple
            self._state = state


_stub_classes = {}


def stub_class(module, qualname):
    key = (module, qualname)
    if key not in _stub_classes:
        _stub_classes[key] = type(qualname, (Stub,),
                                  {"_module": module, "_qualname": qualname})
    return _stub_classes[key]


DType = collections.namedtuple("DType", "name")                  # torch.<dtype>
EnumValue = collections.namedtuple("EnumValue", "cls name")       # enum pickled by name
StorageType = collections.namedtuple("StorageType", "dtype")     # None: UntypedStorage (bytes)
Storage = collections.namedtuple("Storage", "stype key numel")
TensorView = collections.namedtuple("TensorView", "storage storage_offset size stride dtype")


def _getattr_enum(cls, name):
    if not (isinstance(cls, type) and issubclass(cls, Stub)):
        raise pickle.UnpicklingError("builtins.getattr on a non-enum")
    return EnumValue(cls, name)


def _rebuild_v2(storage, offset, size, stride, *rest):
    if storage.stype.dtype is None:
        raise RefError("_rebuild_tensor_v2 with an untyped storage")
    return TensorView(storage, offset, tuple(size), tuple(stride), storage.stype.dtype)


def _rebuild_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *rest):
    return TensorView(storage, offset, tuple(size), tuple(stride), dtype.name)


_STUB_MODULES = (
    "torch.distributed.checkpoint.", "torch.distributed._shard.checkpoint.",
    "torch.distributed._shard.sharded_tensor.metadata",
    "megatron.core.dist_checkpointing.", "pathlib",
)

_FUNCS = {
    ("builtins", "getattr"): _getattr_enum,
    ("torch", "Size"): tuple,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.serialization", "_get_layout"): lambda name: ("layout", name),
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_v3,
    ("torch._utils", "_rebuild_tensor"): _rebuild_v2,
    ("torch._utils", "_rebuild_parameter"): lambda data, *rest: data,
}


class InertUnpickler(pickle.Unpickler):
    """find_class never imports; persistent ids become Storage records."""

    def find_class(self, module, name):
        if module.startswith("torch.distributed._shard.checkpoint."):
            module = "torch.distributed.checkpoint." + module.split(".", 4)[4]
        if (module, name) in _FUNCS:
            return _FUNCS[(module, name)]
        if module == "torch" and (name in ELEM_SIZE or name in OTHER_DTYPES):
            return DType(name)
        if module == "torch" and name in _STORAGE_DTYPE:
            return StorageType(_STORAGE_DTYPE[name])
        if (module, name) in (("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage")):
            return StorageType(None)
        if module.startswith(_STUB_MODULES):
            return stub_class(module, name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType)):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        return Storage(pid[1], str(pid[2]), int(pid[4]))


def inert_loads(data):
    return InertUnpickler(io.BytesIO(data)).load()


# --------------------------------------------------------------------------
# torch.save zip items

def _zip_records(blob):
    """Map record name -> bytes, slicing via the local headers (no CRC check)."""
    zf = zipfile.ZipFile(io.BytesIO(blob))
    out = {}
    for info in zf.infolist():
        h = info.header_offset
        if blob[h:h + 4] != b"PK\x03\x04":
            raise RefError(f"bad local header for {info.filename}")
        nlen, xlen = struct.unpack_from("<HH", blob, h + 26)
        start = h + 30 + nlen + xlen
        if info.compress_type != zipfile.ZIP_STORED or start + info.file_size > len(blob):
            raise RefError(f"bad record {info.filename}")
        out[info.filename] = blob[start:start + info.file_size]
    return zf.infolist()[0].filename.split("/", 1)[0], out


def decode_tensor_item(blob):
    """torch.save zip of one tensor -> (dtype, shape, C-contiguous LE bytes)."""
    prefix, recs = _zip_records(blob)
    view = inert_loads(recs[f"{prefix}/data.pkl"])
    if not isinstance(view, TensorView):
        raise RefError(f"item is not a tensor: {type(view).__name__}")
    es = ELEM_SIZE[view.dtype]
    raw = recs[f"{prefix}/data/{view.storage.key}"]
    nbytes = view.storage.numel * (es if view.storage.stype.dtype else 1)
    if len(raw) < nbytes:
        raise RefError("storage record shorter than its element count")
    big = recs.get(f"{prefix}/byteorder", b"little").strip() == b"big"
    size, stride = view.size, view.stride
    if len(size) != len(stride):
        raise RefError("size/stride rank mismatch")
    numel = math.prod(size)
    out = bytearray()
    if numel:
        last = view.storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last * es + es > nbytes:
            raise RefError("tensor view exceeds its storage")
        for idx in _ndindex(size[:-1]):
            base = view.storage_offset + sum(i * st for i, st in zip(idx, stride))
            if not size:                                # 0-d tensor
                out += raw[base * es:base * es + es]
            elif stride[-1] == 1:
                out += raw[base * es:(base + size[-1]) * es]
            else:
                for j in range(size[-1]):
                    p = (base + j * stride[-1]) * es
                    out += raw[p:p + es]
    if big:                       # complex: each half is a separate float
        unit = es // 2 if view.dtype.startswith("complex") else es
        out = b"".join(out[i:i + unit][::-1] for i in range(0, len(out), unit))
    return view.dtype, tuple(size), bytes(out)


def _ndindex(shape):
    """All index tuples of `shape` in C order (one empty tuple for shape ())."""
    return itertools.product(*(range(n) for n in shape))


def _decompress_zstd(data):
    try:
        import zstandard
    except ImportError:
        raise RefSkip("stream.zstd/1 item but the zstandard module is not installed")
    out, dctx = bytearray(), zstandard.ZstdDecompressor()
    while data:                               # several frames are allowed
        dobj = dctx.decompressobj()
        out += dobj.decompress(data)
        if len(dobj.unused_data) >= len(data):
            raise RefError("zstd: no progress decoding the item")
        data = dobj.unused_data
    return bytes(out)


# --------------------------------------------------------------------------
# Checkpoint

@dataclass
class RefTensor:
    dtype: str
    shape: tuple
    data: bytes


@dataclass
class Checkpoint:
    tensors: dict = field(default_factory=dict)
    bytes_keys: list = field(default_factory=list)
    storage: dict = field(default_factory=dict)   # (fqn, offsets|None) -> info


def _read_metadata_roots(dirpath):
    path = os.path.join(dirpath, ".metadata")
    files = [path] if os.path.exists(path) else sorted(glob.glob(os.path.join(dirpath, "__*.metadata")))
    if not files:
        raise RefError(f"{dirpath}: no .metadata or __*.metadata")
    roots = []
    for f in files:
        with open(f, "rb") as fh:
            root = inert_loads(fh.read())
        if not hasattr(root, "state_dict_metadata"):
            raise RefError(f"{f}: root object has no state_dict_metadata")
        roots.append(root)
    return roots


def _item_bytes(dirpath, info):
    rel, off, length, transforms = info
    path = os.path.normpath(os.path.join(dirpath, rel))
    if os.path.dirname(path) != os.path.normpath(dirpath):
        raise RefError(f"relative_path escapes the checkpoint: {rel!r}")
    with open(path, "rb") as fh:
        fh.seek(off)
        blob = fh.read(length)
    if len(blob) != length:
        raise RefError(f"{rel}: short item at {off}+{length}")
    for d in transforms:
        name, _, ver = d.partition("/")
        if name == "stream.zstd" and ver.split(".")[0] == "1":
            blob = _decompress_zstd(blob)
        else:
            raise RefError(f"unknown stream transform {d!r}")
    return blob


def load(dirpath):
    ck = Checkpoint()
    meta = {}                                   # fqn -> (dtype, size, set of chunks)
    for root in _read_metadata_roots(dirpath):
        for fqn, entry in root.state_dict_metadata.items():
            kind = type(entry).__name__
            if kind == "BytesStorageMetadata":
                if fqn not in ck.bytes_keys:
                    ck.bytes_keys.append(fqn)
                continue
            if kind != "TensorStorageMetadata":
                raise RefError(f"{fqn}: unknown entry class {kind}")
            props = entry.properties
            dt = props._state[0] if props._state is not None else props.dtype
            size = tuple(entry.size)
            chunks = {(tuple(c.offsets), tuple(c.sizes)) for c in entry.chunks}
            if fqn in meta:
                if meta[fqn][:2] != (dt.name, size):
                    raise RefError(f"{fqn}: dtype/size disagree between metadata files")
                meta[fqn][2].update(chunks)
            else:
                meta[fqn] = (dt.name, size, chunks)
        if not isinstance(root.storage_data, dict):
            raise RefError("storage_data is not a dict (non-filesystem writer)")
        for idx, si in root.storage_data.items():
            off = getattr(idx, "offset", None)
            key = (idx.fqn, tuple(off) if off is not None else None)
            ck.storage[key] = (si.relative_path, si.offset, si.length,
                               list(getattr(si, "transform_descriptors", None) or []))
    for fqn, (dtype, size, chunks) in meta.items():
        ck.tensors[fqn] = _assemble(dirpath, ck.storage, fqn, dtype, size, chunks)
    return ck


def _assemble(dirpath, storage, fqn, dtype, size, chunks):
    es = ELEM_SIZE.get(dtype)
    if es is None:
        raise RefError(f"{fqn}: unsupported dtype {dtype}")
    numel = math.prod(size)
    out = bytearray(numel * es)
    cover = bytearray(numel)
    gstride = [1] * len(size)
    for d in range(len(size) - 2, -1, -1):
        gstride[d] = gstride[d + 1] * size[d + 1]
    for offs, sizes in sorted(chunks):
        if len(offs) != len(size) or len(sizes) != len(size):
            raise RefError(f"{fqn}: chunk rank mismatch")
        if any(s == 0 for s in sizes):
            continue
        if any(o < 0 or o + s > n for o, s, n in zip(offs, sizes, size)):
            raise RefError(f"{fqn}: chunk {offs}+{sizes} out of bounds")
        info = storage.get((fqn, offs))
        if info is None:
            raise RefError(f"{fqn}: no storage item for chunk {offs}")
        cdt, cshape, data = decode_tensor_item(_item_bytes(dirpath, info))
        if cdt != dtype:
            raise RefError(f"{fqn}: item dtype {cdt} != metadata dtype {dtype}")
        cnumel = math.prod(sizes)
        if len(data) != cnumel * es:
            raise RefError(f"{fqn}: item shape {cshape} does not fit chunk {sizes}")
        row = sizes[-1] if sizes else 1
        src = 0
        for idx in _ndindex(sizes[:-1]):
            g = sum((o + i) * st for o, i, st in zip(offs, idx, gstride))
            if sizes:
                g += offs[-1]
            if any(cover[g:g + row]):
                raise RefError(f"{fqn}: overlapping chunks at {offs}")
            cover[g:g + row] = b"\x01" * row
            out[g * es:(g + row) * es] = data[src:src + row * es]
            src += row * es
    if not all(cover):
        raise RefError(f"{fqn}: chunks leave holes in the tensor")
    return RefTensor(dtype, size, bytes(out))


# --------------------------------------------------------------------------
# Naming and safetensors

def default_names(fqns):
    """ckptfs default naming: drop non-model entries, strip one shared root."""
    keep = []
    for f in fqns:
        if (f.split(".", 1)[0] in NON_MODEL_ROOTS or "_extra_state" in f
                or f.endswith("_flat_param")):
            continue
        keep.append(f)
    roots = {f.split(".", 1)[0] for f in keep}
    if keep and len(roots) == 1 and all("." in f for f in keep):
        return {f.split(".", 1)[1]: f for f in keep}
    return {f: f for f in keep}


def safetensors_dtype(name):
    try:
        return _ST_DTYPE[name]
    except KeyError:
        raise RefError(f"no safetensors dtype for torch.{name}") from None


def _no_dup_keys(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise RefError(f"duplicate JSON key {k!r}")
        d[k] = v
    return d


def read_safetensors(path):
    """Parse and strictly validate a safetensors file."""
    with open(path, "rb") as fh:
        blob = fh.read()
    if len(blob) < 8:
        raise RefError("file shorter than the 8-byte header length")
    (n,) = struct.unpack_from("<Q", blob, 0)
    if 8 + n > len(blob):
        raise RefError("header length exceeds file size")
    if (8 + n) % 8:
        raise RefError(f"data section starts at {8 + n}, not a multiple of 8")
    header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=_no_dup_keys)
    if not isinstance(header, dict):
        raise RefError("header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and
                                     all(isinstance(v, str) for v in metadata.values())):
        raise RefError("__metadata__ must map str to str")
    data = blob[8 + n:]
    spans, tensors = [], {}
    for name, e in header.items():
        dt, shape, (b, end) = e["dtype"], e["shape"], e["data_offsets"]
        if dt not in ST_ELEM_SIZE or set(e) != {"dtype", "shape", "data_offsets"}:
            raise RefError(f"{name}: bad entry {e}")
        numel = 1
        for s in shape:
            if not isinstance(s, int) or s < 0:
                raise RefError(f"{name}: bad shape {shape}")
            numel *= s
        if not (isinstance(b, int) and isinstance(end, int) and 0 <= b <= end):
            raise RefError(f"{name}: bad data_offsets")
        if end - b != numel * ST_ELEM_SIZE[dt]:
            raise RefError(f"{name}: data_offsets length {end - b} != {numel} x {dt}")
        spans.append((b, end, name))
        tensors[name] = (dt, tuple(shape), data[b:end])
    pos = 0
    for b, end, name in sorted(spans):
        if b != pos:
            raise RefError(f"{name}: starts at {b}, expected {pos} (gap or overlap)")
        pos = end
    if pos != len(data):
        raise RefError(f"data section is {len(data)} bytes, tensors end at {pos}")
    return metadata, tensors
