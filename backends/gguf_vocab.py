"""Tokenizer metadata for a GGUF, read from a Hugging Face model folder.

When no base GGUF supplies the tokenizer (``export_gguf(folder, None, ...)``), the file still
needs one, written the way llama.cpp's own converter writes it. Two kinds are read:

- byte-level BPE (``tokenizer.json`` with a BPE model and a ByteLevel decoder: Qwen2, Qwen3,
  Llama 3): ``tokenizer.ggml.model`` "gpt2", the tokens spelled as in tokenizer.json, their
  types (control for special added tokens, user-defined for other added ones, unused for padding
  rows), the merges, and the pre-tokenizer llama.cpp splits text with. That last one is told by
  the split regex in tokenizer.json (``PRE_TOKENIZERS``); an unknown regex is refused, not
  guessed, because the wrong pre-tokenizer tokenizes differently without any error.
- SentencePiece (``tokenizer.model``: Gemma, Llama 2, Mistral v0.1): ``tokenizer.ggml.model``
  "llama" with the pieces, their scores and types. Reading it needs the ``sentencepiece``
  package; without it the export is refused with the alternatives named.

Special token ids, whether BOS/EOS are added, the merges and the chat template come from gguf's
``SpecialVocab`` (tokenizer.json, tokenizer_config.json, config.json, chat_template.jinja). The
keys are recorded through a ``gguf.GGUFWriter`` that writes no file, so each has the GGUF type
llama.cpp's converter gives it. gguf and sentencepiece are imported inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import BackendError
from .gguf_io import GGUFValue, import_gguf
from .optional import require

# The Split regex of a byte-level tokenizer.json → llama.cpp's tokenizer.ggml.pre. Qwen2/Qwen3
# split digits one by one, Llama 3 in runs of up to three; the rest is the same.
_QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS: dict[str, str] = {
    _QWEN2_REGEX: "qwen2",
    _QWEN2_REGEX.replace(r"|\p{N}|", r"|\p{N}{1,3}|"): "llama-bpe",
}
# gguf.TokenType values
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6
_BASE_HINT = "pass the GGUF the model came from as base_gguf (it supplies the tokenizer)"


def hf_tokenizer_metadata(model_dir: str | Path, n_vocab: int, arch: str) -> dict[str, GGUFValue]:
    """The ``tokenizer.*`` GGUF keys for the tokenizer saved in ``model_dir``.

    ``n_vocab`` is the number of embedding rows: ids the tokenizer does not use become
    ``[PAD<id>]`` tokens of type unused, as llama.cpp's converter writes them. Raises
    ``BackendError`` with a one-line reason when the tokenizer is missing or not one of the
    kinds above.
    """
    folder = Path(model_dir)
    tokenizer_json = _read_json(folder / "tokenizer.json")
    if tokenizer_json is not None and _is_byte_level_bpe(tokenizer_json):
        return _byte_level_bpe(folder, tokenizer_json, n_vocab, arch)
    if (folder / "tokenizer.model").is_file():
        return _sentencepiece(folder, tokenizer_json, n_vocab, arch)
    if tokenizer_json is not None:
        model = tokenizer_json.get("model") or {}
        if model.get("type") == "BPE" and model.get("byte_fallback"):
            raise BackendError(
                f"{folder}/tokenizer.json is a SentencePiece-style tokenizer but the folder has "
                "no tokenizer.model, whose piece scores llama.cpp needs: copy tokenizer.model "
                f"into it, or {_BASE_HINT}"
            )
        raise BackendError(
            f"{folder}/tokenizer.json is a {model.get('type', 'unknown')} tokenizer; GGUF export "
            f"reads byte-level BPE (tokenizer.json) and SentencePiece (tokenizer.model) ones: "
            f"{_BASE_HINT}"
        )
    raise BackendError(
        f"{folder} has no tokenizer (tokenizer.json or tokenizer.model): save one into it with "
        f"tokenizer.save_pretrained, or {_BASE_HINT}"
    )


def pre_tokenizer_name(tokenizer_json: Mapping[str, Any]) -> str | None:
    """llama.cpp's name for the pre-tokenizer of a byte-level tokenizer.json, if it knows it:
    one Split by a regex in ``PRE_TOKENIZERS``, then ByteLevel without a regex of its own."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    if len(steps) != 2:
        return None
    split, byte_level = steps
    pattern = split.get("pattern") or {}
    if (
        split.get("type") != "Split"
        or split.get("invert")
        or byte_level.get("type") != "ByteLevel"
        or byte_level.get("use_regex", True)
        or byte_level.get("add_prefix_space")
        or not isinstance(pattern, Mapping)
    ):
        return None
    return PRE_TOKENIZERS.get(pattern.get("Regex", ""))


# --- byte-level BPE ------------------------------------------------------------------------


def _is_byte_level_bpe(tokenizer_json: Mapping[str, Any]) -> bool:
    model = tokenizer_json.get("model") or {}
    decoder = tokenizer_json.get("decoder") or {}
    decoders = decoder.get("decoders", []) if decoder.get("type") == "Sequence" else [decoder]
    return (
        model.get("type") == "BPE"
        and not model.get("byte_fallback", False)
        and any(d.get("type") == "ByteLevel" for d in decoders)
    )


def _byte_level_bpe(
    folder: Path, tokenizer_json: Mapping[str, Any], n_vocab: int, arch: str
) -> dict[str, GGUFValue]:
    gguf = import_gguf()
    pre = pre_tokenizer_name(tokenizer_json)
    if pre is None:
        raise BackendError(
            f"cannot tell which llama.cpp pre-tokenizer matches {folder}/tokenizer.json (known: "
            f"{', '.join(PRE_TOKENIZERS.values())}, recognised by their split regex); "
            f"{_BASE_HINT}"
        )
    vocab: Mapping[str, int] = tokenizer_json["model"]["vocab"]
    added = _added_tokens(folder, tokenizer_json)
    _check_ids(folder, [*vocab.values(), *added], n_vocab)
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [_UNUSED] * n_vocab
    for text, i in vocab.items():
        tokens[i] = text
        # a vocabulary written by llama.cpp's converter (or read back from a GGUF) keeps its
        # padding rows as tokens of the same name
        types[i] = _UNUSED if text == f"[PAD{i}]" else _NORMAL
    for i, (text, special) in added.items():
        tokens[i], types[i] = _added_type(text, special)

    writer = gguf.GGUFWriter(None, arch)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special_vocab = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab)
    if not special_vocab.merges:
        raise BackendError(f"{folder}/tokenizer.json has no merges; is it a trained BPE tokenizer?")
    return _recorded(writer, special_vocab, gguf, add_bos=False)


# --- SentencePiece -------------------------------------------------------------------------


def _sentencepiece(
    folder: Path, tokenizer_json: Mapping[str, Any] | None, n_vocab: int, arch: str
) -> dict[str, GGUFValue]:
    gguf = import_gguf()
    sentencepiece = require(
        "sentencepiece",
        what=f"{folder} has a SentencePiece tokenizer (tokenizer.model); reading it",
        needs="the sentencepiece package",
        hint=f"pip install sentencepiece, or {_BASE_HINT}",
    )
    sp = sentencepiece.SentencePieceProcessor()
    if not sp.LoadFromFile(str(folder / "tokenizer.model")):  # pragma: no cover - raises first
        raise BackendError(f"cannot read {folder}/tokenizer.model")
    added = _added_tokens(folder, tokenizer_json or {})
    _check_ids(folder, [sp.vocab_size() - 1, *added], n_vocab)
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    scores = [-1000.0] * n_vocab
    types = [_UNUSED] * n_vocab
    for i in range(sp.vocab_size()):
        tokens[i], scores[i] = sp.IdToPiece(i), sp.GetScore(i)
        if sp.IsUnknown(i):
            types[i] = _UNKNOWN
        elif sp.IsControl(i):
            types[i] = _CONTROL
        elif sp.IsUnused(i):
            types[i] = _UNUSED
        elif sp.IsByte(i):
            types[i] = _BYTE
        else:
            types[i] = _NORMAL
    for i, (text, special) in added.items():
        tokens[i], types[i] = _added_type(text, special)
        scores[i] = -1000.0

    writer = gguf.GGUFWriter(None, arch)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    if arch == "gemma3":  # Gemma's normalizer adds no leading space (llama.cpp's default does)
        writer.add_add_space_prefix(False)
    return _recorded(writer, gguf.SpecialVocab(folder, n_vocab=n_vocab), gguf, add_bos=True)


# --- shared --------------------------------------------------------------------------------


def _added_tokens(folder: Path, tokenizer_json: Mapping[str, Any]) -> dict[int, tuple[str, bool]]:
    """id → (text, special) of the tokens added on top of the model's own vocabulary, from
    tokenizer.json, tokenizer_config.json's ``added_tokens_decoder`` and added_tokens.json."""
    added: dict[int, tuple[str, bool]] = {}
    for text, i in (_read_json(folder / "added_tokens.json") or {}).items():
        added[int(i)] = (text, False)
    config = _read_json(folder / "tokenizer_config.json") or {}
    for i, entry in (config.get("added_tokens_decoder") or {}).items():
        added[int(i)] = (entry["content"], bool(entry.get("special")))
    for entry in tokenizer_json.get("added_tokens") or []:
        added[int(entry["id"])] = (entry["content"], bool(entry.get("special")))
    return added


def _added_type(text: str, special: bool) -> tuple[str, int]:
    """An added token's text and type as llama.cpp expects: control tokens for special ones
    and for ``<|...|>``-shaped ones some tokenizers fail to mark; user-defined tokens are
    matched in raw text, so SentencePiece's ▁ becomes a space."""
    if special or (text.startswith("<|") and text.endswith("|>")):
        return text, _CONTROL
    return text.replace("\u2581", " "), _USER_DEFINED


def _check_ids(folder: Path, ids: list[int], n_vocab: int) -> None:
    top = max(ids, default=-1)
    if top >= n_vocab:
        raise BackendError(
            f"the tokenizer in {folder} has token id {top} but the model has only {n_vocab} "
            "embedding rows; is it the tokenizer these weights were trained with?"
        )


def _recorded(writer: Any, special_vocab: Any, gguf: Any, *, add_bos: bool) -> dict[str, GGUFValue]:
    """The keys written to ``writer`` (no file) plus ``special_vocab``'s, as ``GGUFValue``s.

    ``add_bos`` is what transformers does when the tokenizer files do not say (fast BPE
    tokenizers add nothing, SentencePiece ones a BOS); it is written rather than left to
    llama.cpp's default, which differs per pre-tokenizer."""
    special_vocab.add_to_gguf(writer, quiet=True)
    keys = writer.kv_data[0]
    if gguf.Keys.Tokenizer.ADD_BOS not in keys:
        writer.add_add_bos_token(add_bos)
    return {
        key: GGUFValue(v.value, int(v.type), None if v.sub_type is None else int(v.sub_type))
        for key, v in keys.items()
        if key != gguf.Keys.General.ARCHITECTURE
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read {path}: {e}") from e
    return data if isinstance(data, dict) else None
