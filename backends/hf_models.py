"""HF model folders for training: from a GGUF (converted once, cached), a folder, or the Hub.

Training needs transformers weights; inference here runs on GGUF files. ``materialize_hf``
bridges the two: transformers dequantizes the GGUF (``from_pretrained(dir, gguf_file=...)``),
the GGUF's quantizer is detached (transformers refuses to train or save a model that still has
one) and the result is saved as a float32 HF folder with the tokenizer and chat template. The
folder is cached under the GGUF's sha256 (``$MRTUI_CACHE_DIR/hf`` or ``~/.cache/mrtui/hf``),
written to a temporary folder first and renamed into place, so a second call is instant and a
killed process leaves nothing half-written. Loading costs ~15 s per pass over a GGUF with the
150k-token Qwen vocabulary (gguf's reader builds one numpy view per token); we make two passes
where plain ``AutoTokenizer`` + ``AutoModelForCausalLM`` calls would make three.

transformers, torch and huggingface_hub are imported only inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .base import BackendError
from .models import GGUF_MAGIC, HF_PREFIX, PACKAGED_MODELS, file_sha256, resolve_model
from .optional import TRAIN_HINT, require

SOURCE_FILE = "mrtui-source.json"  # provenance written next to a materialised model
# How materialised folders are made; a cached folder of an older layout is made again.
# 2: tied embeddings stay tied (see _retie).
LAYOUT = 2
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def hf_cache_dir() -> Path:
    """Where materialised HF folders live: ``$MRTUI_CACHE_DIR/hf``, else ``~/.cache/mrtui/hf``."""
    env = os.environ.get("MRTUI_CACHE_DIR")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "mrtui"
    return root / "hf"


# --- HF folders --------------------------------------------------------------------------


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a config.json (an HF model folder, maybe incomplete)."""
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def check_hf_folder(path: str | Path) -> Path:
    """The absolute path if it is a complete HF model folder, else a BackendError naming the gap."""
    p = Path(path).expanduser().absolute()
    if not p.is_dir():
        raise BackendError(f"model folder not found: {p}")
    if not (p / "config.json").is_file():
        raise BackendError(
            f"{p} has no config.json: pass an HF model folder (save_pretrained output) or a .gguf"
        )
    if not any(any(p.glob(pat)) for pat in _WEIGHT_PATTERNS):
        raise BackendError(
            f"{p} has no weights (*.safetensors); save the model with save_pretrained"
        )
    if not any((p / name).is_file() for name in _TOKENIZER_FILES):
        raise BackendError(
            f"{p} has no tokenizer; save one into it with tokenizer.save_pretrained({str(p)!r})"
        )
    return p


def _weights(p: Path) -> list[Path]:
    """An HF folder's weight files, sorted, or a BackendError when it has none."""
    files = sorted({f for pat in _WEIGHT_PATTERNS for f in p.glob(pat)})
    if not files:
        raise BackendError(f"{p} has no weights (*.safetensors)")
    return files


def folder_sha256(folder: str | Path) -> str:
    """An HF folder's content hash, the identity the log records for it: the sha256 over
    sorted ``name sha256`` lines of its ``config.json`` and every weights file. Each file's
    hash is computed once and remembered (see ``models.file_sha256``)."""
    p = Path(folder)
    lines = "".join(f"{f.name} {file_sha256(f)}\n" for f in [p / "config.json", *_weights(p)])
    return hashlib.sha256(lines.encode()).hexdigest()


def weights_sha256(folder: str | Path) -> str:
    """Hash of an HF folder's weights: the sha256 of its only weights file, or for sharded
    folders the sha256 over sorted ``name sha256`` lines of every shard."""
    files = _weights(Path(folder))
    if len(files) == 1:
        return file_sha256(files[0])
    lines = "".join(f"{f.name} {file_sha256(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


# --- GGUF → HF ---------------------------------------------------------------------------


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    """Load ``gguf_path`` with transformers (dequantized, float32) and save it to ``target``."""
    torch, transformers = require(
        "torch",
        "transformers",
        what="loading models for training",
        needs="the training extra",
        hint=TRAIN_HINT,
    )
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # dequantize=True: architectures transformers can keep packed (qwen3.5, lfm2 in 5.24) would
    # otherwise stay in GGUF blocks, which cannot be trained. Older releases always dequantize.
    unpack: dict[str, Any] = {}
    try:
        from transformers import GgufConfig

        unpack["quantization_config"] = GgufConfig(dequantize=True)
    except (ImportError, TypeError):  # pragma: no cover - transformers < 5.2x
        pass

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
        # Given the config, the model load reads the file once more (for the tensors) instead
        # of twice.
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, config=config, dtype=torch.float32, **unpack
        )
        try:  # tokenizer_type skips AutoTokenizer's own (slow) pass over the metadata
            tokenizer = AutoTokenizer.from_pretrained(
                folder, gguf_file=name, tokenizer_type=config.model_type
            )
        except (ValueError, KeyError):
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except (ValueError, KeyError, NotImplementedError) as e:
        raise BackendError(
            f"transformers {transformers.__version__} cannot load {gguf_path.name} "
            f"({type(e).__name__}: {e}); pass an HF model folder of the same model instead"
        ) from e
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    if getattr(model.config, "quantization_config", None) is not None:  # pragma: no cover
        del model.config.quantization_config
    _retie(model, gguf_path)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    from .model_ref import gguf_quantization

    source = {
        "gguf_path": str(gguf_path),
        "gguf_sha256": file_sha256(gguf_path),
        "gguf_size": gguf_path.stat().st_size,
        "gguf_quantization": gguf_quantization(gguf_path),
        "dtype": "float32",
        "layout": LAYOUT,
        "transformers": transformers.__version__,
        "created_unix": round(time.time(), 3),
    }
    (target / SOURCE_FILE).write_text(json.dumps(source, indent=1, sort_keys=True) + "\n")
    share_readable(target)


def _retie(model: Any, gguf_path: Path) -> None:
    """A GGUF without an ``output.weight`` tensor ties the output layer to the embeddings;
    transformers' GGUF loader copies them into an untied ``lm_head`` instead, which makes the
    folder (and every checkpoint trained from it) one embedding matrix larger and lets the two
    drift apart in training. Tie them again, as the model was made."""
    from .gguf_io import read_gguf_header

    names = {t.name for t in read_gguf_header(gguf_path).tensors}
    if "output.weight" in names or not hasattr(model, "get_output_embeddings"):
        return
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embed is None or head.weight.shape != embed.weight.shape:
        return
    model.config.tie_word_embeddings = True
    text = getattr(model.config, "text_config", None)
    if text is not None and hasattr(text, "tie_word_embeddings"):
        text.tie_word_embeddings = True
    head.weight = embed.weight


def share_readable(folder: Path) -> None:
    """Make a written model folder world-readable (safetensors are saved private)."""
    os.chmod(folder, 0o755)
    for f in folder.iterdir():
        if f.is_file():
            os.chmod(f, 0o644)
        elif f.is_dir():
            share_readable(f)


def _materialize_gguf(gguf_path: Path, cache_dir: Path | None) -> Path:
    sha = file_sha256(gguf_path)
    root = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    target = root / sha
    if is_hf_folder(target):
        if (source_of(target) or {}).get("layout") == LAYOUT:
            return target
        shutil.rmtree(target, ignore_errors=True)  # an older layout: made again below
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{sha[:16]}.", suffix=".tmp"))
    except OSError as e:
        raise BackendError(
            f"cannot write to the HF model cache {root} ({e}); "
            "set MRTUI_CACHE_DIR to a writable directory"
        ) from e
    try:
        _convert_gguf(gguf_path, tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not is_hf_folder(target):  # not a concurrent writer that finished first
                raise
    except OSError as e:
        raise BackendError(
            f"could not write the HF copy of {gguf_path.name} to {root} ({e}); check the free "
            "space there (a 0.5B model needs ~2 GB) or set MRTUI_CACHE_DIR"
        ) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --- the Hub -----------------------------------------------------------------------------


def download_hf_repo(repo_id: str) -> Path:
    hub = require(
        "huggingface_hub",
        what=f"hf:{repo_id}",
        hint="pip install 'mrtui[hub]' (or download the model elsewhere and pass its folder)",
    )
    snapshot_download = hub.snapshot_download
    try:
        local = snapshot_download(
            repo_id=repo_id,
            allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"],
        )
    except Exception as e:  # offline, missing repo, auth: all end the same way
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(
            f"could not download {repo_id} from the Hugging Face Hub ({type(e).__name__}: "
            f"{reason}); when offline, download it on a machine with network access and pass "
            "the local folder"
        ) from e
    return check_hf_folder(local)


# --- entry point -------------------------------------------------------------------------


def materialize_hf(model: str | Path, cache_dir: Path | None = None) -> Path:
    """An HF model folder for ``model``, ready for ``from_pretrained`` and training.

    ``model`` is one of:

    - an HF model folder (config.json + safetensors + tokenizer): returned as it is;
    - a ``.gguf`` file, a packaged model name, or ``hf:OWNER/REPO/FILE.gguf``: the GGUF is
      converted once and cached under its sha256 in ``cache_dir`` (default ``hf_cache_dir()``);
    - ``hf:OWNER/REPO``: an HF model repository, downloaded with huggingface_hub (needs network
      and ``mrtui[hub]``).
    """
    text = str(model)
    if text.startswith(HF_PREFIX) and text[len(HF_PREFIX) :].strip("/").count("/") == 1:
        return download_hf_repo(text[len(HF_PREFIX) :].strip("/"))
    path = Path(text).expanduser()
    if path.is_dir():
        return check_hf_folder(path)
    if text in PACKAGED_MODELS or text.startswith(HF_PREFIX):
        path = resolve_model(text).path
    elif not path.exists():
        raise BackendError(
            f"model not found: {text} (pass an HF model folder, a .gguf file, hf:OWNER/REPO, "
            f"hf:OWNER/REPO/FILE.gguf or one of: {', '.join(PACKAGED_MODELS)})"
        )
    elif not _is_gguf(path):
        raise BackendError(f"{path} is neither an HF model folder nor a GGUF file")
    return _materialize_gguf(path.absolute(), cache_dir)


def source_of(folder: str | Path) -> dict[str, Any] | None:
    """The provenance ``materialize_hf`` wrote into a converted folder, or None."""
    try:
        data = json.loads((Path(folder) / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
