"""Write GGUF files from Hugging Face-named numpy tensors.

The ``gguf`` package has a writer and the HF → GGUF tensor-name tables but no converter. We copy
every metadata key (tokenizer, chat template, ...) from a base GGUF of the same model family,
override the hyperparameters that changed, and write the tensors under their GGUF names. This is
how trained (e.g. DPO) weights go back to llama.cpp, and how the tests build a tiny model.

Per-architecture fixes to the tensors live in ``_TRANSFORMS``: qwen2 needs none; gemma3 stores
RMSNorm weights as 1+w and llama-family q/k projections need the rotary permutation (not done yet).
numpy and gguf are imported inside the functions that need them.
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

from .base import BackendError

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
)  # gguf.LlamaFileType.ALL_F32 / MOSTLY_F16


def _import_gguf() -> Any:
    try:
        import gguf
    except ImportError as e:
        raise BackendError(
            "writing GGUF files needs gguf and numpy: pip install 'mrtui[train]'"
        ) from e
    return gguf


# --- per-architecture tensor fixes ---------------------------------------------------------


def _as_is(name: str, array: np.ndarray, hparams: Mapping[str, Any]) -> np.ndarray:
    return array


def _gemma3(name: str, array: np.ndarray, hparams: Mapping[str, Any]) -> np.ndarray:
    raise NotImplementedError(
        "GGUF export for gemma3 is not implemented yet: llama.cpp expects its RMSNorm weights "
        "stored as 1+w (HF stores w); add that shift here and test it against the HF model"
    )


def _llama(name: str, array: np.ndarray, hparams: Mapping[str, Any]) -> np.ndarray:
    raise NotImplementedError(
        "GGUF export for llama is not implemented yet: q_proj/k_proj weights need the rotary "
        "permutation convert_hf_to_gguf.py applies; add it here and test it against the HF model"
    )


_TRANSFORMS: dict[str, Transform] = {"qwen2": _as_is, "gemma3": _gemma3, "llama": _llama}


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


def hf_config_to_overrides(config: Mapping[str, Any], arch: str = "qwen2") -> dict[str, Any]:
    """GGUF hyperparameter keys for an HF ``config.json`` (only the fields it has).

    transformers 5 writes ``rope_theta`` inside ``rope_parameters``; it is read from there when
    the top level has none. Fields set to null are left out (they would delete the base key).
    """
    rope = config.get("rope_parameters")
    if config.get("rope_theta") is None and isinstance(rope, Mapping) and "rope_theta" in rope:
        config = {**config, "rope_theta": rope["rope_theta"]}
    return {
        f"{arch}.{key}": config[field]
        for field, key in _HF_TO_GGUF.items()
        if config.get(field) is not None
    }


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
class _Value:
    value: Any  # strings stay raw bytes so they copy byte for byte
    vtype: int
    sub_type: int | None = None


@dataclass(frozen=True)
class GGUFTensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order (innermost first), as gguf-dump prints it
    ggml_type: int  # gguf.GGMLQuantizationType value: 0 F32, 1 F16, ...


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, _Value]
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
        meta: dict[str, _Value] = {}
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
                meta[key] = _Value(items, vtype, sub)
            else:
                meta[key] = _Value(cur.value(vtype), vtype)
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
    base_gguf: str | Path,
    arch: str = "qwen2",
    overrides: Mapping[str, Any] | None = None,
    dtype: Literal["f16", "f32"] = "f16",
) -> Path:
    """Write ``tensors`` (HF names, HF shapes) as a GGUF with ``base_gguf``'s metadata.

    Tensors are numpy arrays (from torch: ``t.float().cpu().numpy()``), e.g. a model's
    ``state_dict`` after DPO. Rotary ``inv_freq`` buffers are skipped, and so is an
    ``lm_head.weight`` equal to the embeddings (tied; llama.cpp reuses token_embd).

    ``overrides`` sets metadata keys; keys outside general., tokenizer., split., adapter.,
    mrtui. and <arch>. get ``<arch>.`` in front (``"block_count"`` → ``"qwen2.block_count"``),
    and the value None removes a key. Matrices are stored in ``dtype``; vectors (norms,
    biases) stay float32 as llama.cpp expects. The file is written next to ``out_path`` and
    renamed into place when complete.
    """
    gguf = _import_gguf()
    import numpy as np

    if arch not in _TRANSFORMS:
        raise ValueError(f"unsupported arch {arch!r}; supported: {', '.join(_TRANSFORMS)}")
    if dtype not in _FILE_TYPE:
        raise ValueError(f"dtype must be 'f16' or 'f32', got {dtype!r}")
    arch_ids = {name: a for a, name in gguf.MODEL_ARCH_NAMES.items()}
    out = Path(out_path)

    meta = read_gguf_header(base_gguf).metadata
    base_arch = meta["general.architecture"].value.decode()
    keep = {k: v for k, v in meta.items() if not k.startswith(_SKIP_KEYS)}
    if base_arch != arch:  # hyperparameters of another family mean nothing here
        keep = {k: v for k, v in keep.items() if not k.startswith(f"{base_arch}.")}
    keep["general.file_type"] = _Value(_FILE_TYPE[dtype], _UINT32)
    for key, value in (overrides or {}).items():
        full = _full_key(key, arch)
        if value is None:
            keep.pop(full, None)
        elif full in keep:  # keep the base file's type for a known key
            keep[full] = _Value(value, keep[full].vtype, keep[full].sub_type)
        else:
            keep[full] = _Value(value, *_infer_type(value))
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
    ) -> dict:
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
