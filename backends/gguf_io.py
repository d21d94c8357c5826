"""Write GGUF files from Hugging Face-named numpy tensors.

The ``gguf`` package has a writer and the HF → GGUF tensor-name tables but no converter. We take
the metadata either from a base GGUF of the same model family (every key copied: tokenizer, chat
template, ...) or from the caller alone (``base_gguf=None``: ``gguf_vocab`` reads the tokenizer
from the HF folder), override the hyperparameters that changed, and write the tensors under their
GGUF names. This is how trained (e.g. DPO) weights go back to llama.cpp, and how the tests build a
tiny model.

Per-architecture fixes to the tensors live in ``_TRANSFORMS``: qwen2 and qwen3 need none; gemma3
stores its RMSNorm weights as 1+w (HF multiplies by 1+w, llama.cpp by the stored weight); llama
(Llama, Mistral) q/k projections are permuted from HF's half-split rotary layout to the
interleaved pairs llama.cpp rotates. ``hf_config_to_overrides`` turns ``config.json`` into the
GGUF hyperparameter keys of each architecture. numpy and gguf are imported inside the functions
that need them.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .optional import TRAIN_HINT, require

if TYPE_CHECKING:
    import numpy as np

Transform = Callable[[str, "np.ndarray", Mapping[str, Any]], "np.ndarray"]

# Keys the writer sets itself or that describe the old file's layout.
_SKIP_KEYS = ("GGUF.", "general.architecture", "general.alignment")
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.")
# Buffers some HF checkpoints carry that are not weights.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
_FILE_TYPE = {"f32": 0, "f16": 1}  # gguf.LlamaFileType.ALL_F32 / MOSTLY_F16
# Metadata namespaces taken as they are; other override keys get "<arch>." in front.
_NAMESPACES = (
    "general.",
    "tokenizer.",
    "split.",
    "adapter.",
    "mrtui.",
)


def import_gguf() -> Any:
    """The gguf package (numpy with it), which writing GGUF files needs."""
    gguf, _numpy = require("gguf", "numpy", what="writing GGUF files", hint=TRAIN_HINT)
    return gguf


# --- per-architecture tensor fixes ---------------------------------------------------------


def _as_is(name: str, array: np.ndarray, hparams: Mapping[str, Any]) -> np.ndarray:
    return array


def _gemma3(name: str, array: np.ndarray, hparams: Mapping[str, Any]) -> np.ndarray:
    """Gemma3RMSNorm scales by 1+w; llama.cpp's RMS norm scales by the stored weight."""
    import numpy as np

    if name.endswith("norm.weight"):
        return array.astype(np.float32) + np.float32(1.0)
    return array


def _llama(name: str, array: np.ndarray, hparams: Mapping[str, Any]) -> np.ndarray:
    """Llama/Mistral q and k rows from HF's rotary layout to llama.cpp's."""
    n_head = hparams["llama.attention.head_count"]
    if name.endswith(("q_proj.weight", "q_proj.bias")):
        return interleave_rotary(array, n_head)
    if name.endswith(("k_proj.weight", "k_proj.bias")):
        return interleave_rotary(array, hparams.get("llama.attention.head_count_kv") or n_head)
    return array


def interleave_rotary(array: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of each head so that HF's rotary pairs become adjacent.

    HF Llama rotates dimension i of a head together with dimension i + head_dim/2
    (``rotate_half``); llama.cpp's llama graph (``LLAMA_ROPE_TYPE_NORM``) rotates dimensions 2i
    and 2i+1. Row i of the first half becomes row 2i, row i of the second half row 2i+1.
    Works on weights (rows × inputs) and biases (rows).
    """
    rows = array.shape[0]
    if rows % n_head or (rows // n_head) % 2:
        raise ValueError(f"{rows} rows do not split into {n_head} heads of even size")
    halves = array.reshape(n_head, 2, rows // n_head // 2, *array.shape[1:])
    return halves.swapaxes(1, 2).reshape(array.shape)


_TRANSFORMS: dict[str, Transform] = {
    "qwen2": _as_is,
    "qwen3": _as_is,
    "gemma3": _gemma3,
    "llama": _llama,
}


# --- hyperparameters -----------------------------------------------------------------------

# HF config.json field → GGUF key suffix (after "<arch>."), for the decoder-only families above.
_HF_TO_GGUF = {
    "num_hidden_layers": "block_count",
    "max_position_embeddings": "context_length",
    "hidden_size": "embedding_length",
    "intermediate_size": "feed_forward_length",
    "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv",
    "rope_theta": "rope.freq_base",
    "rms_norm_eps": "attention.layer_norm_rms_epsilon",
}
_FLOAT_FIELDS = ("rope_theta", "rms_norm_eps")  # GGUF float32 even when JSON has 500000
GEMMA3_SWA_PATTERN = 6  # llama.cpp's default for gemma3: every 6th layer attends globally


def hf_rope_parameters(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The rotary parameters of an HF config: (global layers, sliding-window layers).

    Reads transformers 5's ``rope_parameters`` (flat, or per layer type as gemma3 has it) and
    the older ``rope_scaling`` + ``rope_theta`` (+ gemma3's ``rope_local_base_freq``). A
    top-level ``rope_theta`` wins over one inside ``rope_parameters``.
    """
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope = rope if isinstance(rope, Mapping) else {}
    if "full_attention" in rope or "sliding_attention" in rope:
        full = dict(rope.get("full_attention") or {})
        local = dict(rope.get("sliding_attention") or {})
    else:
        full, local = dict(rope), {}
    if "rope_type" not in full and "type" in full:
        full["rope_type"] = full["type"]
    if config.get("rope_theta") is not None:
        full["rope_theta"] = config["rope_theta"]
    if config.get("rope_local_base_freq") is not None:
        local.setdefault("rope_theta", config["rope_local_base_freq"])
    return full, local


def hf_config_to_overrides(config: Mapping[str, Any], arch: str = "qwen2") -> dict[str, Any]:
    """GGUF hyperparameter keys for an HF ``config.json`` (only the fields it has).

    transformers 5 writes ``rope_theta`` inside ``rope_parameters``; it is read from there when
    the top level has none. Fields set to null are left out (they would delete the base key).
    ``head_dim`` gives the key/value lengths; llama also gets its rotary dimension count, linear
    rope scaling its type and factor, gemma3 its sliding window, which layers use it (only when
    they differ from llama.cpp's every-6th-is-global default), the sliding layers' rope base and
    the final logit soft-cap (``None`` where the model has none, which removes a base key).
    """
    full, local = hf_rope_parameters(config)
    values = {**config, "rope_theta": full.get("rope_theta")}
    out: dict[str, Any] = {
        f"{arch}.{key}": float(values[field]) if field in _FLOAT_FIELDS else values[field]
        for field, key in _HF_TO_GGUF.items()
        if values.get(field) is not None
    }
    head_dim = config.get("head_dim")
    if head_dim is not None:
        out[f"{arch}.attention.key_length"] = head_dim
        out[f"{arch}.attention.value_length"] = head_dim
    if full.get("rope_type") == "linear" and full.get("factor") is not None:
        out[f"{arch}.rope.scaling.type"] = "linear"
        out[f"{arch}.rope.scaling.factor"] = float(full["factor"])
    if arch == "llama":
        heads, hidden = config.get("num_attention_heads"), config.get("hidden_size")
        if head_dim is None and heads and hidden:
            head_dim = hidden // heads
        if head_dim is not None:
            out["llama.rope.dimension_count"] = head_dim
    if arch == "gemma3":
        out.update(_gemma3_overrides(config, local))
    return out


def gemma3_sliding_layers(config: Mapping[str, Any]) -> list[bool]:
    """Which layers of a gemma3 config attend through the sliding window.

    ``layer_types`` (transformers ≥ 4.53) when present, else ``sliding_window_pattern``
    (every n-th layer global; default 6).
    """
    types = config.get("layer_types")
    if types:
        return [t == "sliding_attention" for t in types]
    n = config.get("sliding_window_pattern") or config.get("_sliding_window_pattern")
    pattern = int(n or GEMMA3_SWA_PATTERN)
    return [bool((i + 1) % pattern) for i in range(int(config.get("num_hidden_layers", 0)))]


def _gemma3_overrides(config: Mapping[str, Any], local: Mapping[str, Any]) -> dict[str, Any]:
    sliding = gemma3_sliding_layers(config)
    window = config.get("sliding_window")
    out: dict[str, Any] = {
        "gemma3.attention.sliding_window": None,
        "gemma3.attention.sliding_window_pattern": None,
        "gemma3.final_logit_softcapping": None,
    }
    if any(sliding) and window:
        out["gemma3.attention.sliding_window"] = int(window)
        default = [i % GEMMA3_SWA_PATTERN < GEMMA3_SWA_PATTERN - 1 for i in range(len(sliding))]
        if sliding != default:  # an array of per-layer flags; llama.cpp reads it since late 2025
            out["gemma3.attention.sliding_window_pattern"] = sliding
        if local.get("rope_theta") is not None:
            out["gemma3.rope.freq_base_swa"] = float(local["rope_theta"])
    if config.get("final_logit_softcapping") is not None:
        out["gemma3.final_logit_softcapping"] = float(config["final_logit_softcapping"])
    return out


def hf_config_to_tensors(config: Mapping[str, Any], arch: str) -> dict[str, np.ndarray]:
    """Tensors llama.cpp needs that the HF checkpoint does not hold, under their GGUF names.

    Llama 3.1+ rotary scaling (``rope_type: llama3``) is a fixed function of the config in HF;
    llama.cpp reads it as per-frequency divisors in ``rope_freqs.weight``.
    """
    import numpy as np

    full, _ = hf_rope_parameters(config)
    if arch != "llama" or full.get("rope_type") != "llama3":
        return {}
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    theta = float(full.get("rope_theta", 10000.0))
    factor = float(full.get("factor", 8.0))
    low, high = float(full.get("low_freq_factor", 1.0)), float(full.get("high_freq_factor", 4.0))
    old_ctx = float(full.get("original_max_position_embeddings", 8192))
    wavelen = 2 * np.pi * theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    smooth = np.clip((old_ctx / wavelen - low) / max(high - low, 1e-9), 0.0, 1.0)
    divisors = np.where(
        wavelen < old_ctx / high,  # high frequencies: unchanged
        1.0,
        np.where(wavelen > old_ctx / low, factor, 1.0 / ((1.0 - smooth) / factor + smooth)),
    )
    return {"rope_freqs.weight": divisors.astype(np.float32)}


def _full_key(key: str, arch: str) -> str:
    if key.startswith((*_NAMESPACES, f"{arch}.")):
        return key
    return f"{arch}.{key}"


def _infer_type(value: Any) -> tuple[int, int | None]:
    """GGUF type codes for a new metadata value (known keys keep the base file's type)."""
    if isinstance(value, bool):
        return _BOOL, None
    if isinstance(value, int):
        return (_UINT32 if 0 <= value < 2**32 else _INT64), None
    if isinstance(value, float):
        return _FLOAT32, None
    if isinstance(value, str | bytes):
        return _STRING, None
    if isinstance(value, list | tuple) and value:
        return _ARRAY, _infer_type(value[0])[0]
    raise ValueError(f"cannot store {value!r} in GGUF metadata")


# --- reading ------------------------------------------------------------------------------

# GGUF value type codes (gguf.GGUFValueType) and their struct formats.
_UINT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _INT64 = 4, 6, 7, 8, 9, 11
_SCALAR_FMT = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}


@dataclass
class GGUFValue:
    """A metadata value with its GGUF type codes (``gguf.GGUFValueType`` values)."""

    value: Any  # strings read from a file stay raw bytes so they copy byte for byte
    vtype: int
    sub_type: int | None = None  # the element type of an array


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order (innermost first), as gguf-dump prints it
    ggml_type: int  # gguf.GGMLQuantizationType value: 0 F32, 1 F16, ...


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, GGUFValue]
    tensors: tuple[GGUFTensorInfo, ...]


class _Cursor:
    """Reads little-endian GGUF fields from a buffer."""

    def __init__(self, buf: bytes | mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str, count: int = 1) -> tuple[Any, ...]:
        full = f"<{count}{fmt}"
        out = struct.unpack_from(full, self.buf, self.pos)
        self.pos += struct.calcsize(full)
        return out

    def string(self) -> bytes:
        (n,) = self.take("Q")
        s = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return s

    def value(self, vtype: int) -> Any:
        if vtype == _STRING:
            return self.string()
        if vtype in _SCALAR_FMT:
            return self.take(_SCALAR_FMT[vtype])[0]
        raise ValueError(f"unexpected GGUF value type {vtype}")


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Metadata and tensor list of a GGUF file, without reading the tensor data.

    Our own small parser: gguf.GGUFReader builds numpy views for every token string and takes
    seconds on a 150k-token vocabulary; this takes a fraction of that.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        cur = _Cursor(buf)
        if bytes(buf[:4]) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        cur.pos = 4
        (version,) = cur.take("I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} is not supported (big-endian?)")
        n_tensors, n_kv = cur.take("Q", 2)
        meta: dict[str, GGUFValue] = {}
        for _ in range(n_kv):
            key = cur.string().decode()
            (vtype,) = cur.take("I")
            if vtype == _ARRAY:
                sub, n = cur.take("I")[0], cur.take("Q")[0]
                if sub == _STRING:
                    items: list[Any] = [cur.string() for _ in range(n)]
                elif sub in _SCALAR_FMT:
                    items = list(cur.take(_SCALAR_FMT[sub], n))
                else:
                    raise ValueError(f"{path}: nested array in {key} is not supported")
                meta[key] = GGUFValue(items, vtype, sub)
            else:
                meta[key] = GGUFValue(cur.value(vtype), vtype)
        tensors = []
        for _ in range(n_tensors):
            name = cur.string().decode()
            (n_dims,) = cur.take("I")
            shape = cur.take("Q", n_dims)
            ggml_type, _offset = cur.take("I")[0], cur.take("Q")[0]
            tensors.append(GGUFTensorInfo(name, tuple(shape), ggml_type))
    return GGUFHeader(version, meta, tuple(tensors))


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """A GGUF's metadata as plain Python values (strings decoded), for checks and display."""

    def plain(v: Any) -> Any:
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace")
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v

    return {k: plain(v.value) for k, v in read_gguf_header(path).metadata.items()}


# --- writing -------------------------------------------------------------------------------


def write_gguf(
    out_path: str | Path,
    tensors: Mapping[str, np.ndarray],
    base_gguf: str | Path | None,
    arch: str = "qwen2",
    overrides: Mapping[str, Any] | None = None,
    dtype: Literal["f16", "f32"] = "f16",
    *,
    extra_tensors: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write ``tensors`` (HF names, HF shapes) as a GGUF with ``base_gguf``'s metadata.

    Tensors are numpy arrays (from torch: ``t.float().cpu().numpy()``), e.g. a model's
    ``state_dict`` after DPO. Rotary ``inv_freq`` buffers are skipped, and so is an
    ``lm_head.weight`` equal to the embeddings (tied; llama.cpp reuses token_embd).
    ``extra_tensors`` are written as they are, under the GGUF names they have
    (``hf_config_to_tensors``).

    ``overrides`` sets metadata keys; keys outside general., tokenizer., split., adapter.,
    mrtui. and <arch>. get ``<arch>.`` in front (``"block_count"`` → ``"qwen2.block_count"``),
    and the value None removes a key. A ``GGUFValue`` is stored with its own type; a plain
    value keeps the base file's type for a key it has, else gets one from the Python type.
    With ``base_gguf=None`` the overrides are the whole metadata, tokenizer included
    (``gguf_vocab.hf_tokenizer_metadata``). Matrices are stored in ``dtype``; vectors (norms,
    biases) stay float32 as llama.cpp expects. The file is written next to ``out_path`` and
    renamed into place when complete.
    """
    gguf = import_gguf()
    import numpy as np

    if arch not in _TRANSFORMS:
        raise ValueError(f"unsupported arch {arch!r}; supported: {', '.join(_TRANSFORMS)}")
    if dtype not in _FILE_TYPE:
        raise ValueError(f"dtype must be 'f16' or 'f32', got {dtype!r}")
    arch_ids = {name: a for a, name in gguf.MODEL_ARCH_NAMES.items()}
    out = Path(out_path)

    keep: dict[str, GGUFValue] = {}
    if base_gguf is not None:
        meta = read_gguf_header(base_gguf).metadata
        base_arch = meta["general.architecture"].value.decode()
        keep = {k: v for k, v in meta.items() if not k.startswith(_SKIP_KEYS)}
        if base_arch != arch:  # hyperparameters of another family mean nothing here
            keep = {k: v for k, v in keep.items() if not k.startswith(f"{base_arch}.")}
    keep["general.file_type"] = GGUFValue(_FILE_TYPE[dtype], _UINT32)
    for key, value in (overrides or {}).items():
        full = _full_key(key, arch)
        if value is None:
            keep.pop(full, None)
        elif isinstance(value, GGUFValue):
            keep[full] = value
        elif full in keep:  # keep the base file's type for a known key
            keep[full] = GGUFValue(value, keep[full].vtype, keep[full].sub_type)
        else:
            keep[full] = GGUFValue(value, *_infer_type(value))
    hparams = {k: v.value for k, v in keep.items()}

    layers = {int(m.group(1)) for name in tensors if (m := _LAYER_RE.match(name))}
    n_blocks = max(layers) + 1 if layers else 0
    declared = hparams.get(f"{arch}.block_count")
    if declared != n_blocks:
        raise ValueError(
            f"the tensors hold {n_blocks} layers but {arch}.block_count is {declared}; "
            "pass overrides={'block_count': ...}"
        )

    name_map = gguf.get_tensor_name_map(arch_ids[arch], n_blocks)
    transform = _TRANSFORMS[arch]
    mapped: list[tuple[str, np.ndarray]] = []
    unmapped = []
    for hf_name, array in tensors.items():
        if hf_name.endswith(_IGNORED_SUFFIXES) or _is_tied_head(hf_name, array, tensors):
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            unmapped.append(hf_name)
            continue
        arr = np.asarray(transform(hf_name, np.asarray(array), hparams))
        want = np.float16 if dtype == "f16" and arr.ndim >= 2 else np.float32
        mapped.append((name, np.ascontiguousarray(arr, dtype=want)))
    if unmapped:
        raise ValueError(f"no GGUF name for {arch} tensors: {', '.join(sorted(unmapped))}")
    for name, array in (extra_tensors or {}).items():
        arr = np.asarray(array)
        want = np.float16 if dtype == "f16" and arr.ndim >= 2 else np.float32
        mapped.append((name, np.ascontiguousarray(arr, dtype=want)))
    _check_vocab(dict(mapped), hparams)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        vt = gguf.GGUFValueType
        writer = gguf.GGUFWriter(tmp, arch)
        for key, v in keep.items():
            sub = None if v.sub_type is None else vt(v.sub_type)
            writer.add_key_value(
                key, list(v.value) if v.vtype == _ARRAY else v.value, vt(v.vtype), sub
            )
        for name, arr in mapped:
            writer.add_tensor(name, arr)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _is_tied_head(name: str, array: np.ndarray, tensors: Mapping[str, np.ndarray]) -> bool:
    import numpy as np

    embed = tensors.get("model.embed_tokens.weight")
    return name == "lm_head.weight" and embed is not None and np.array_equal(array, embed)


def _check_vocab(mapped: Mapping[str, np.ndarray], hparams: Mapping[str, Any]) -> None:
    tokens = hparams.get("tokenizer.ggml.tokens")
    embd = mapped.get("token_embd.weight")
    if tokens is not None and embd is not None and embd.shape[0] != len(tokens):
        raise ValueError(
            f"token_embd has {embd.shape[0]} rows but the tokenizer has {len(tokens)} tokens; "
            "the base GGUF must carry the tokenizer these weights were trained with"
        )


# --- a tiny random Qwen2 for tests ---------------------------------------------------------


@dataclass(frozen=True)
class TinyQwen2Config:
    """Shape of the tiny model; ``to_hf_config`` gives the matching HF ``config.json``."""

    vocab_size: int
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 32768
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_hf_config(
        self, bos_token_id: int | None = None, eos_token_id: int | None = None
    ) -> dict[str, Any]:
        return {
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            **asdict(self),
            "hidden_act": "silu",
            "attention_dropout": 0.0,
            "use_sliding_window": False,
            "torch_dtype": "float32",
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
        }


def tiny_qwen2_weights(config: TinyQwen2Config, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 weights under HF Qwen2 names.

    Scales: projections get 1/sqrt(fan_in) so each block changes the residual stream about as
    much as the token embedding is worth; the embedding (also the tied output layer) gets
    std 0.1, so logits spread over a few nats and sampling gives varied text instead of one
    repeated token.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    h, kv = config.hidden_size, config.num_key_value_heads * config.head_dim

    def dense(out_dim: int, in_dim: int) -> np.ndarray:
        return rng.normal(0.0, in_dim**-0.5, (out_dim, in_dim)).astype(np.float32)

    def bias(dim: int) -> np.ndarray:
        return rng.normal(0.0, 0.02, (dim,)).astype(np.float32)

    w: dict[str, np.ndarray] = {
        "model.embed_tokens.weight": rng.normal(0.0, 0.1, (config.vocab_size, h)).astype(np.float32)
    }
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = np.ones(h, np.float32)
        w[p + "self_attn.q_proj.weight"] = dense(h, h)
        w[p + "self_attn.q_proj.bias"] = bias(h)
        w[p + "self_attn.k_proj.weight"] = dense(kv, h)
        w[p + "self_attn.k_proj.bias"] = bias(kv)
        w[p + "self_attn.v_proj.weight"] = dense(kv, h)
        w[p + "self_attn.v_proj.bias"] = bias(kv)
        w[p + "self_attn.o_proj.weight"] = dense(h, h)
        w[p + "post_attention_layernorm.weight"] = np.ones(h, np.float32)
        w[p + "mlp.gate_proj.weight"] = dense(config.intermediate_size, h)
        w[p + "mlp.up_proj.weight"] = dense(config.intermediate_size, h)
        w[p + "mlp.down_proj.weight"] = dense(h, config.intermediate_size)
    w["model.norm.weight"] = np.ones(h, np.float32)
    if not config.tie_word_embeddings:
        w["lm_head.weight"] = rng.normal(0.0, 0.1, (config.vocab_size, h)).astype(np.float32)
    return w


def build_tiny_qwen2(
    out_dir: str | Path, base_gguf: str | Path, seed: int = 0, dtype: Literal["f16", "f32"] = "f16"
) -> Path:
    """Write a tiny random Qwen2 GGUF with ``base_gguf``'s tokenizer and chat template."""
    meta = read_gguf_metadata(base_gguf)
    arch = meta["general.architecture"]
    if arch != "qwen2":
        raise ValueError(f"the base GGUF must be a qwen2 model (for its tokenizer), got {arch}")
    config = TinyQwen2Config(vocab_size=len(meta["tokenizer.ggml.tokens"]))
    overrides: dict[str, Any] = {
        **hf_config_to_overrides(asdict(config), arch),
        "general.name": f"mrtui tiny qwen2 (random, seed {seed})",
        "general.size_label": None,
        "general.finetune": None,
        "general.basename": None,
        "general.quantization_version": None,
    }
    out = Path(out_dir) / f"tiny-qwen2-seed{seed}-{dtype}.gguf"
    return write_gguf(out, tiny_qwen2_weights(config, seed), base_gguf, arch, overrides, dtype)
