"""The model each iteration runs on, and where its files are, found from the log.

A checkpoint's identity (``sha256``) is the content hash of the model as it is: a GGUF file's
sha256, or an HF folder's content hash. A trained checkpoint is an HF folder (in the dtype it
trained in); a run served by llama.cpp also gets a GGUF export of it.

Paths under the log's folder are recorded relative to it, so a log moved or copied together
with its ``<log>.checkpoints`` folder finds its checkpoints from any working directory. Logs
written before that recorded paths relative to the directory the run started in; those are
found under the log's folder by their ``<log>.checkpoints`` part.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrtui.store import events as ev

from .settings import ConfigError


@dataclass(frozen=True)
class Checkpoint:
    """M_t. ``format`` says what ``sha256`` hashes ("gguf" or "hf"); ``gguf_path`` and
    ``hf_dir`` are absolute paths of a GGUF and an HF folder of the model, where there are
    (a GGUF model's dequantised folder is made on demand and is not one of them);
    ``gguf_sha256`` is the GGUF's own hash when it is an export of an HF checkpoint;
    ``quantization`` a GGUF model's file type (``Q4_K_M``)."""

    model_id: str
    sha256: str
    gguf_path: str | None = None
    hf_dir: str | None = None
    format: str = "gguf"
    gguf_sha256: str | None = None
    quantization: str | None = None
    for_iteration: int = 1

    @property
    def served_hashes(self) -> set[str]:
        """Hashes a backend may report for this model: its identity or its GGUF export's."""
        return {h for h in (self.sha256, self.gguf_sha256) if h}


def log_relative(log_path: Path, path: str | Path) -> str:
    """How a path is recorded in the log: relative to the log's folder when it lies under it,
    absolute otherwise."""
    p = Path(path).absolute()
    root = log_path.absolute().parent
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


def from_log(log_path: Path, stored: str | None) -> str | None:
    """The absolute path a recorded path names now (see the module docstring). A path that
    exists nowhere comes back as where it should be under the log's folder."""
    if stored is None:
        return None
    p = Path(stored)
    root = log_path.absolute().parent
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [root / p]
        marker = f"{log_path.stem}.checkpoints"
        if marker in p.parts:  # an older log: relative to where the run was started
            candidates.append(root / Path(*p.parts[p.parts.index(marker) :]))
        candidates.append(p.absolute())
    for c in candidates:
        if c.exists():
            return str(c)
    return str(candidates[0])


def require(path: str | None, sha256: str, what: str) -> Path:
    """``path`` if it exists, else a one-line ConfigError naming it and the hash it should
    have, so a resume never retrains because it looked in the wrong place."""
    if path is None or not Path(path).exists():
        raise ConfigError(
            f"{what} is missing: looked for {path} (model sha256 {sha256[:12]}…); move the "
            "log together with its .checkpoints folder, or restore that file"
        )
    return Path(path)


def from_event(log_path: Path, payload: dict[str, Any]) -> Checkpoint:
    """A ``CheckpointCreated`` payload as a Checkpoint, its paths found from the log."""
    c = ev.parse(ev.CheckpointCreated, payload)
    return Checkpoint(
        c.model_id,
        c.model_sha256,
        from_log(log_path, c.gguf_path),
        from_log(log_path, c.hf_dir),
        c.model_format or "gguf",
        c.gguf_sha256,
        None,
        c.for_iteration,
    )
