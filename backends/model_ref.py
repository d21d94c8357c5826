"""What a ``--model`` reference names: its format, where it is, its content hash and its origin.

A reference is one of:

- an HF model folder (``config.json``, ``*.safetensors``, a tokenizer);
- ``hf:OWNER/REPO``: an HF model repository, downloaded with huggingface_hub (needs network);
- a ``.gguf`` file, ``hf:OWNER/REPO/FILE.gguf`` or a packaged model's name (see
  :mod:`.models`).

Every command that loads a model resolves it here, and every backend gets what it loads from
it: llama.cpp a GGUF (an HF folder is converted once, cached under its content hash),
transformers and vLLM an HF folder (a GGUF is dequantised once, cached under its sha256, and
that copy keeps the GGUF's identity). The identity the log records is ``ModelRef.sha256``: a
GGUF file's sha256, or an HF folder's content hash (:func:`.hf_models.folder_sha256`).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from .base import BackendError
from .models import HF_PREFIX, PACKAGED_MODELS, cache_dir, file_sha256, resolve_model

ModelFormat = Literal["hf", "gguf"]
DEFAULT_GGUF_TYPE = "f16"


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference. ``quantization`` is a GGUF's file type (``Q4_K_M``) and
    None for HF folders; ``origin`` says where it came from: ``packaged:NAME``,
    ``hub:OWNER/REPO[/FILE]`` or ``local``."""

    ref: str
    format: ModelFormat
    path: Path
    sha256: str
    origin: str
    chat_format: str | None = None
    quantization: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @property
    def dequantised(self) -> bool:
        """Whether training this model means training a dequantised copy of quantised weights."""
        return self.format == "gguf" and self.quantization not in (None, "F32", "F16", "BF16")


def _hub_repo(text: str) -> str | None:
    """``OWNER/REPO`` for an ``hf:OWNER/REPO`` reference (not ``hf:OWNER/REPO/FILE.gguf``)."""
    if not text.startswith(HF_PREFIX):
        return None
    rest = text[len(HF_PREFIX) :].strip("/")
    return rest if rest.count("/") == 1 and not rest.lower().endswith(".gguf") else None


def gguf_quantization(path: str | Path) -> str | None:
    """A GGUF's file type as llama.cpp names it (``Q4_K_M``, ``Q8_0``, ``F16``), or None."""
    from .gguf_io import read_gguf_header

    with contextlib.suppress(OSError, ValueError, KeyError):
        value = read_gguf_header(path).metadata["general.file_type"].value
        with contextlib.suppress(ImportError, ValueError):
            import gguf

            return (
                str(gguf.LlamaFileType(int(value)).name)
                .removeprefix("MOSTLY_")
                .removeprefix("ALL_")
            )
        return f"file type {int(value)}"
    return None


def resolve_reference(ref: str | Path) -> ModelRef:
    """Resolve any model reference (see the module docstring), or a one-line BackendError."""
    from .hf_models import check_hf_folder, download_hf_repo, folder_sha256, source_of

    text = str(ref)
    repo = _hub_repo(text)
    if repo is not None:
        folder = download_hf_repo(repo)
        return ModelRef(text, "hf", folder, folder_sha256(folder), f"hub:{repo}")
    path = Path(text).expanduser()
    if text not in PACKAGED_MODELS and path.is_dir():
        folder = check_hf_folder(path)
        source = source_of(folder)
        if source and source.get("gguf_sha256"):  # a GGUF's dequantised copy is that model
            return ModelRef(
                text,
                "hf",
                folder,
                str(source["gguf_sha256"]),
                f"dequantised:{source.get('gguf_path', '?')}",
                quantization=source.get("gguf_quantization"),
            )
        return ModelRef(text, "hf", folder, folder_sha256(folder), "local")
    if text not in PACKAGED_MODELS and not text.startswith(HF_PREFIX) and not path.exists():
        raise BackendError(
            f"model not found: {path.absolute()} (pass an HF model folder, hf:OWNER/REPO, a "
            f".gguf file, hf:OWNER/REPO/FILE.gguf or one of: {', '.join(PACKAGED_MODELS)})"
        )
    resolved = resolve_model(text)
    origin = (
        f"packaged:{text}"
        if text in PACKAGED_MODELS
        else f"hub:{text[len(HF_PREFIX) :]}"
        if text.startswith(HF_PREFIX)
        else "local"
    )
    return ModelRef(
        text,
        "gguf",
        resolved.path,
        resolved.sha256,
        origin,
        resolved.chat_format,
        gguf_quantization(resolved.path),
    )


def gguf_cache_dir() -> Path:
    """Where GGUF conversions of HF folders live (under the model cache)."""
    return cache_dir() / "gguf"


def gguf_file(
    model: ModelRef, outtype: str = DEFAULT_GGUF_TYPE, base_gguf: str | Path | None = None
) -> Path:
    """A GGUF llama.cpp can load for ``model``: the file itself, or for an HF folder its
    conversion to ``outtype``, written once and cached under the folder's content hash.
    ``base_gguf`` (the GGUF an HF folder was trained from) supplies the tokenizer metadata;
    without it the tokenizer comes from the folder."""
    if model.format == "gguf":
        return model.path
    from .export import export_gguf

    base = Path(base_gguf) if base_gguf is not None else None
    tag = f"-b{file_sha256(base)[:12]}" if base is not None else ""
    out = gguf_cache_dir() / f"{model.sha256[:32]}{tag}-{outtype}.gguf"
    if out.is_file():
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BackendError(
            f"cannot write to the GGUF cache {out.parent} ({e}); set MRTUI_CACHE_DIR to a "
            "writable directory"
        ) from e
    export_gguf(model.path, base, out, outtype=outtype)
    return out


def hf_folder(model: ModelRef) -> Path:
    """An HF folder for ``model``: the folder itself, or a GGUF's dequantised copy (made once,
    cached under the file's sha256)."""
    if model.format == "hf":
        return model.path
    from .hf_models import materialize_hf

    return materialize_hf(model.path)
