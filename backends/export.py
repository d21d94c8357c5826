"""Trained Hugging Face model folder → GGUF that llama.cpp serves in the next iteration.

The folder is what training writes (``config.json`` plus ``*.safetensors``). Its tensors are
written under GGUF names by ``gguf_io.write_gguf`` with the hyperparameters taken from
``config.json``. The tokenizer and chat template come from the GGUF the iteration started from
(``base_gguf``: every metadata key copied byte for byte) or, with ``base_gguf=None``, from the
folder's own tokenizer files (``gguf_vocab``: byte-level BPE such as Qwen's and Llama 3's, and
SentencePiece when the sentencepiece package is installed). ``f16``/``f32`` are written
directly; quantized types are written as f16 first and then quantized by llama.cpp itself
(``llama_cpp.llama_model_quantize``), so the result is exactly what llama.cpp's own quantizer
makes. Files appear atomically (temporary file, rename).

``SUPPORTED_ARCHS`` maps the HF ``model_type`` values this exporter reads to GGUF
architectures: qwen2; qwen3 (q/k norms); llama and mistral (q/k rows permuted to llama.cpp's
rotary layout, Llama 3.1+ rope scaling written as the ``rope_freqs`` tensor; Mistral's sliding
window is dropped, as llama.cpp's own converter drops it, so attention matches within the
window); gemma3_text and the language model of a gemma3 checkpoint (norm weights stored as 1+w;
the sliding window, which layers use it, their rope base and the final logit soft-cap carried
over). Config settings llama.cpp would silently compute differently are refused with a one-line
``BackendError``: other rope scalings, a gemma3 query scale other than the one llama.cpp
derives, attention soft-capping, sliding windows in qwen models, other activations.

numpy, gguf, safetensors, torch and llama_cpp are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .base import BackendError
from .optional import require

if TYPE_CHECKING:
    import numpy as np

# outtype → name of the llama_ftype constant in llama_cpp (None: written directly, no quantizer).
OUTTYPES: dict[str, str | None] = {
    "f32": None,
    "f16": None,
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}
# HF config.json model_type → GGUF architecture: the one list of what export reads.
SUPPORTED_ARCHS: dict[str, str] = {
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "llama": "llama",
    "mistral": "llama",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",  # the language model of the multimodal checkpoint
}
# The MLP activation llama.cpp's graph for each architecture computes.
_ACTIVATIONS = {"qwen2": "silu", "qwen3": "silu", "llama": "silu", "gemma3": "gelu_pytorch_tanh"}
# Gemma3TextConfig's defaults: a gemma3 config.json saved by transformers 4 holds in its
# text_config only what differs from them.
_GEMMA3_TEXT_DEFAULTS: dict[str, Any] = {
    "head_dim": 256,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-6,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "max_position_embeddings": 131072,
    "hidden_activation": "gelu_pytorch_tanh",
    "tie_word_embeddings": True,
}
_GEMMA3_ROPE_DEFAULTS = {"rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0}
# Where a multimodal checkpoint keeps its language model (transformers 4 and 5 names), and
# what of it is not the language model.
_LANGUAGE_MODEL_PREFIXES = (
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
    ("model.language_model.", "model."),
)
_NOT_LANGUAGE_MODEL = (
    "vision_tower.",
    "multi_modal_projector.",
    "model.vision_tower.",
    "model.multi_modal_projector.",
)
# config.json fields a GGUF without a base file cannot do without.
_REQUIRED = (
    "num_hidden_layers",
    "max_position_embeddings",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "rms_norm_eps",
)
_F16_MAX = 65504.0
_CHUNK = 8 * 1024 * 1024
_EXPORT_HINT = "pip install 'mrtui[train]'"
_QUANT_HINT = "pip install 'mrtui[llama]' (or export f16)"


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sha256: str
    outtype: str
    n_tensors: int
    wall_s: float


def export_gguf(
    model_dir: str | Path,
    base_gguf: str | Path | None,
    out_path: str | Path,
    outtype: str = "q8_0",
    *,
    name: str | None = None,
    n_threads: int | None = None,
    verbose: bool = False,
) -> ExportResult:
    """Write the HF model in ``model_dir`` as a GGUF of type ``outtype`` at ``out_path``.

    ``base_gguf`` supplies the tokenizer and chat template and must be the same model family
    (its vocabulary must match the embedding rows); ``None`` takes them from the tokenizer files
    in ``model_dir`` instead. ``name`` sets ``general.name`` (without a base it defaults to the
    folder's name). ``n_threads`` is for the quantizer (default: every core); ``verbose``
    passes llama.cpp's quantizer log through to stderr (otherwise it is captured and only its
    last line appears, in the error, if quantizing fails). Raises ``BackendError`` with a
    one-line reason when the folder, the base file, the tokenizer or the architecture will not do.
    """
    started = perf_counter()
    if outtype not in OUTTYPES:
        raise BackendError(
            f"unsupported GGUF type {outtype!r}; choose one of {', '.join(OUTTYPES)}"
        )
    model_dir, out = Path(model_dir), Path(out_path)
    base = None if base_gguf is None else Path(base_gguf)
    config = read_hf_config(model_dir)
    arch = hf_arch(config)
    text = hf_text_config(config)
    if base is not None:
        _check_base(base, arch)
    from .gguf_io import hf_config_to_overrides, hf_config_to_tensors

    tensors = load_hf_weights(model_dir, tied=_tied(text))
    overrides: dict[str, Any] = {}
    if name is not None or base is None:
        overrides["general.name"] = name if name is not None else model_dir.name
    overrides.update(hf_config_to_overrides(text, arch))
    if base is None:
        overrides.update(_own_tokenizer(model_dir, text, arch, tensors))
    extra = hf_config_to_tensors(text, arch)
    too_big = _exceeds_f16(tensors)
    if too_big and outtype == "f16":
        raise BackendError(
            f"{model_dir}: tensor {too_big} has values beyond the f16 range; export f32 or a "
            "quantized type instead"
        )

    ftype_name = OUTTYPES[outtype]
    if ftype_name is None:
        _write(out, tensors, base, arch, overrides, outtype, extra)
    else:
        ftype = _ftype(ftype_name)
        out.parent.mkdir(parents=True, exist_ok=True)
        with _tmp_path(out, ".src.gguf") as src, _tmp_path(out, ".q.gguf") as dst:
            _write(src, tensors, base, arch, overrides, "f32" if too_big else "f16", extra)
            del tensors
            quantize_gguf(src, dst, ftype, n_threads=n_threads, verbose=verbose)
            os.chmod(dst, 0o644)
            os.replace(dst, out)

    from .gguf_io import read_gguf_header

    n_tensors = len(read_gguf_header(out).tensors)
    return ExportResult(out, _sha256(out), outtype, n_tensors, perf_counter() - started)


def _own_tokenizer(
    model_dir: Path, config: Mapping[str, Any], arch: str, tensors: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """Tokenizer metadata from the folder itself, after checking that config.json has every
    hyperparameter llama.cpp requires (no base file fills the gaps)."""
    from .gguf_vocab import hf_tokenizer_metadata

    missing = [field for field in _REQUIRED if config.get(field) is None]
    if missing:
        raise BackendError(
            f"{model_dir}/config.json lacks {', '.join(missing)}, which a GGUF needs; add them "
            "or pass the base GGUF the model came from"
        )
    embed = tensors.get("model.embed_tokens.weight")
    if embed is None:
        raise BackendError(f"{model_dir} has no model.embed_tokens.weight")
    return hf_tokenizer_metadata(model_dir, int(embed.shape[0]), arch)


# --- the HF folder -------------------------------------------------------------------------


def read_hf_config(model_dir: Path) -> dict[str, Any]:
    """``config.json`` of a full HF model folder, or a one-line BackendError saying why not."""
    if not model_dir.is_dir():
        raise BackendError(f"model folder not found: {model_dir}")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        if (model_dir / "adapter_config.json").is_file():
            raise BackendError(
                f"{model_dir} holds a LoRA adapter, not a full model: merge it "
                "(peft merge_and_unload) and save the merged model first"
            )
        raise BackendError(f"{model_dir} has no config.json; is it a Hugging Face model folder?")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read {config_path}: {e}") from e
    if not isinstance(config, dict):
        raise BackendError(f"{config_path} is not a JSON object")
    return config


def hf_arch(config: Mapping[str, Any]) -> str:
    """The GGUF architecture of an HF config, if this exporter supports it and llama.cpp
    computes the model as transformers does (a one-line BackendError says what does not)."""
    model_type = config.get("model_type")
    arch = SUPPORTED_ARCHS.get(str(model_type))
    if arch is None:
        raise BackendError(
            f"GGUF export does not support model_type {model_type!r}; supported: "
            f"{', '.join(SUPPORTED_ARCHS)}"
        )
    _check_config(hf_text_config(config), arch)
    return arch


def hf_text_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The language model's config: a multimodal ``text_config`` merged over the top level,
    and for gemma3 the defaults that transformers 4 leaves out of a saved config."""
    text = config.get("text_config")
    merged = {**config, **text} if isinstance(text, Mapping) else dict(config)
    if SUPPORTED_ARCHS.get(str(config.get("model_type"))) == "gemma3":
        merged = {**_GEMMA3_TEXT_DEFAULTS, **merged}
        if not merged.get("rope_parameters"):  # transformers 5 keeps the thetas in there
            merged = {**_GEMMA3_ROPE_DEFAULTS, **merged}
    return merged


def _check_config(config: Mapping[str, Any], arch: str) -> None:
    from .gguf_io import hf_rope_parameters

    full, local = hf_rope_parameters(config)
    rope_types = ("default", "linear", "llama3") if arch == "llama" else ("default", "linear")
    rope_type = full.get("rope_type")
    if rope_type not in (None, *rope_types):
        raise BackendError(
            f"GGUF export does not carry rope scaling ({rope_type!r}) over yet; {arch} exports "
            f"with {', '.join(rope_types)} rotary embeddings"
        )
    act = config.get("hidden_activation") or config.get("hidden_act")
    if act is not None and act != _ACTIVATIONS[arch]:
        raise BackendError(
            f"llama.cpp's {arch} computes {_ACTIVATIONS[arch]} in its MLP, but config.json says "
            f"{act!r}"
        )
    sliding = config.get("use_sliding_window") or "sliding_attention" in (
        config.get("layer_types") or ()
    )
    if arch == "gemma3":
        _check_gemma3(config, local)
    elif arch.startswith("qwen") and sliding:
        raise BackendError(
            f"config.json turns on sliding-window attention, which llama.cpp's {arch} does not "
            "compute; export a model that attends over its whole context"
        )


def _check_gemma3(config: Mapping[str, Any], local_rope: Mapping[str, Any]) -> None:
    if config.get("attn_logit_softcapping") is not None:
        raise BackendError(
            "llama.cpp's gemma3 has no attention logit soft-cap, but config.json sets one"
        )
    if config.get("use_bidirectional_attention"):
        raise BackendError(
            "config.json makes gemma3 attend both ways (an embedding model); llama.cpp's "
            "gemma3 is a causal language model"
        )
    if local_rope.get("rope_type") not in (None, "default"):
        raise BackendError(
            f"GGUF export does not carry rope scaling ({local_rope['rope_type']!r}) of gemma3's "
            "sliding-window layers over; only their default rotary embeddings"
        )
    heads, hidden, layers = (
        config.get("num_attention_heads"),
        config.get("hidden_size"),
        config.get("num_hidden_layers"),
    )
    # llama.cpp scales queries by 1/sqrt(head_dim), and by 1/sqrt(hidden/heads) for the 62-layer
    # 27B, instead of reading query_pre_attn_scalar
    expected = hidden // heads if layers == 62 and heads and hidden else config.get("head_dim")
    scalar = config.get("query_pre_attn_scalar")
    if scalar is not None and expected is not None and scalar != expected:
        raise BackendError(
            f"llama.cpp scales gemma3 queries by 1/sqrt({expected}) but config.json's "
            f"query_pre_attn_scalar is {scalar}; the export would compute another model"
        )


def _tied(config: Mapping[str, Any]) -> bool:
    tied = config.get("tie_word_embeddings")
    if tied is None:
        tied = (config.get("text_config") or {}).get("tie_word_embeddings", False)
    return bool(tied)


def load_hf_weights(model_dir: str | Path, tied: bool = False) -> dict[str, np.ndarray]:
    """Every tensor of an HF folder's ``*.safetensors`` as numpy (bf16 becomes float32).

    A multimodal checkpoint (gemma3) gives its language model only, under the names a
    text-only checkpoint has (``model.*``, ``lm_head.weight``). With ``tied`` the
    ``lm_head.weight`` is dropped (llama.cpp reuses the embeddings); without it a missing
    ``lm_head.weight`` is an error.
    """
    model_dir = Path(model_dir)
    files = _weight_files(model_dir)
    _numpy, safetensors = require("numpy", "safetensors", what="GGUF export", hint=_EXPORT_HINT)
    safe_open = safetensors.safe_open
    try:
        import torch
    except ImportError:
        torch = None

    tensors: dict[str, np.ndarray] = {}
    for path in files:
        try:
            if torch is not None:
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                        t = f.get_tensor(key)
                        if t.dtype not in (torch.float32, torch.float16):
                            t = t.float()
                        tensors[key] = t.numpy()
            else:
                with safe_open(str(path), framework="numpy") as f:
                    for key in f.keys():  # noqa: SIM118
                        tensors[key] = f.get_tensor(key)
        except (TypeError, ValueError) as e:  # numpy cannot hold bf16
            raise BackendError(f"cannot read {path} ({e}); bf16 weights need torch") from e
        except OSError as e:
            raise BackendError(f"cannot read {path}: {e}") from e
    tensors = _language_model(tensors)
    if tied:
        tensors.pop("lm_head.weight", None)
    elif "lm_head.weight" not in tensors:
        raise BackendError(
            f"{model_dir}: config.json says the embeddings are not tied but there is no "
            "lm_head.weight"
        )
    return tensors


def _language_model(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not any(k.startswith(p) for k in tensors for p, _ in _LANGUAGE_MODEL_PREFIXES):
        return tensors
    out: dict[str, np.ndarray] = {}
    for key, array in tensors.items():
        if key.startswith(_NOT_LANGUAGE_MODEL):
            continue
        for prefix, replacement in _LANGUAGE_MODEL_PREFIXES:
            if key.startswith(prefix):
                key = replacement + key[len(prefix) :]
                break
        out[key] = array
    return out


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError) as e:
            raise BackendError(f"cannot read {index}: {e}") from e
        files = [model_dir / f for f in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise BackendError(f"{model_dir} lacks shards listed in {index.name}: {missing}")
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        found = "pytorch_model.bin" if (model_dir / "pytorch_model.bin").exists() else "none"
        raise BackendError(
            f"{model_dir} has no *.safetensors weights (found: {found}); save the model with "
            "save_pretrained(safe_serialization=True)"
        )
    return files


def _exceeds_f16(tensors: Mapping[str, np.ndarray]) -> str | None:
    """Name of a float32 matrix with values f16 cannot hold, if any (vectors stay float32)."""
    import numpy as np

    for key, arr in tensors.items():
        # max/min allocate nothing; a NaN fails the comparison too
        if (
            arr.ndim >= 2
            and arr.dtype == np.float32
            and not -_F16_MAX <= arr.min() <= arr.max() <= _F16_MAX
        ):
            return key
    return None


# --- writing and quantizing ----------------------------------------------------------------


def _check_base(base: Path, arch: str) -> None:
    from .gguf_io import read_gguf_header

    if not base.is_file():
        raise BackendError(f"base GGUF not found: {base}")
    try:
        meta = read_gguf_header(base).metadata
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read base GGUF {base}: {e}") from e
    base_arch = (
        meta["general.architecture"].value.decode() if "general.architecture" in meta else "?"
    )
    if base_arch != arch:
        raise BackendError(
            f"base GGUF {base.name} is a {base_arch} model but the trained model is {arch}; the "
            "base supplies the tokenizer and must be the model the training started from"
        )


def _write(
    out: Path,
    tensors: Mapping[str, np.ndarray],
    base: Path | None,
    arch: str,
    overrides: Mapping[str, Any],
    dtype: str,
    extra: Mapping[str, np.ndarray],
) -> None:
    from .gguf_io import write_gguf

    try:
        write_gguf(out, tensors, base, arch, overrides, dtype, extra_tensors=extra)  # type: ignore[arg-type]
    except ValueError as e:
        raise BackendError(f"cannot write {out.name}: {e}") from e


def quantize_gguf(
    src: str | Path,
    dst: str | Path,
    ftype: int,
    n_threads: int | None = None,
    verbose: bool = False,
) -> None:
    """Quantize an f16/f32 GGUF with llama.cpp's own quantizer (``llama_model_quantize``)."""
    llama_cpp = require(
        "llama_cpp", what="quantized GGUF export", needs="llama-cpp-python", hint=_QUANT_HINT
    )
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = n_threads or 0  # 0: every core
    log: list[str] = []
    with _quiet_llama(verbose), _captured_stderr(log):
        rc = llama_cpp.llama_model_quantize(
            str(src).encode(), str(dst).encode(), llama_cpp.byref(params)
        )
    if verbose and log:
        sys.stderr.write(log[0])
    if rc != 0:
        lines = [ln for ln in "".join(log).splitlines() if ln.strip()]
        why = f": {lines[-1].strip()}" if lines else ""
        raise BackendError(f"llama.cpp could not quantize {Path(src).name} (error {rc}){why}")


def _ftype(const: str) -> int:
    llama_cpp = require(
        "llama_cpp", what="quantized GGUF export", needs="llama-cpp-python", hint=_QUANT_HINT
    )
    value = getattr(llama_cpp, const, None)
    if value is None:
        raise BackendError(f"this llama-cpp-python ({llama_cpp.__version__}) lacks {const}")
    return int(value)


@contextlib.contextmanager
def _quiet_llama(verbose: bool) -> Iterator[None]:
    """llama-cpp-python prints llama.cpp's log unless its logger's level says otherwise."""
    import logging

    logger = logging.getLogger("llama-cpp-python")
    before = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextlib.contextmanager
def _captured_stderr(into: list[str]) -> Iterator[None]:
    """Collect what C code writes to file descriptor 2 (llama.cpp's quantizer prints a warning
    per tensor straight to stderr, which would garble a terminal UI) and append it to ``into``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            into.append(f.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def _tmp_path(out: Path, suffix: str) -> Iterator[Path]:
    """A fresh path next to ``out``, removed afterwards unless it was renamed away."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
