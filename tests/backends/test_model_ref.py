"""Model references: every kind --model takes resolves to a format, a path, a content hash and
an origin; bad references get one line that names what to pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mrtui.backends.base import BackendError
from mrtui.backends.hf_models import folder_sha256
from mrtui.backends.model_ref import resolve_reference


def test_a_gguf_file_is_identified_by_its_sha256_and_file_type(tiny_gguf: Path) -> None:
    from mrtui.backends.models import file_sha256

    ref = resolve_reference(str(tiny_gguf))
    assert ref.format == "gguf" and ref.path == tiny_gguf.absolute()
    assert ref.sha256 == file_sha256(tiny_gguf) and ref.origin == "local"
    assert ref.quantization in {"F16", "F32", "BF16"}  # the tiny model is not quantised
    assert not ref.dequantised


def test_the_packaged_model_is_a_q4_k_m_gguf(qwen_gguf: Path) -> None:
    ref = resolve_reference("qwen2.5-coder-0.5b-instruct")
    assert ref.format == "gguf" and ref.origin == "packaged:qwen2.5-coder-0.5b-instruct"
    assert ref.quantization == "Q4_K_M" and ref.dequantised


def test_an_hf_folder_is_identified_by_its_config_and_weights(
    tiny_hf: Path, tmp_path: Path
) -> None:
    ref = resolve_reference(str(tiny_hf))
    assert ref.format == "hf" and ref.origin == "local" and ref.quantization is None
    assert ref.sha256 == folder_sha256(tiny_hf)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_hf, copy)
    assert resolve_reference(str(copy)).sha256 == ref.sha256  # content, not place
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    assert resolve_reference(str(copy)).sha256 != ref.sha256  # the config is part of it


def test_a_dequantised_copy_keeps_its_ggufs_identity(
    tiny_gguf: Path, tiny_dequantised: Path
) -> None:
    folder = tiny_dequantised
    ref = resolve_reference(str(folder))
    assert ref.format == "hf" and ref.sha256 == resolve_reference(str(tiny_gguf)).sha256
    assert ref.origin.startswith("dequantised:")


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p / "nowhere", "model not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no config.json"),
        (lambda p: (p / "x.gguf").write_bytes(b"nope") and p / "x.gguf", "not a GGUF file"),
    ],
)
def test_a_bad_reference_gets_one_line_naming_the_fix(tmp_path: Path, make, says: str) -> None:
    with pytest.raises(BackendError) as e:
        resolve_reference(str(make(tmp_path)))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_dequantised_copy_keeps_tied_embeddings_tied(
    tiny_gguf: Path, tiny_dequantised: Path
) -> None:
    """The GGUF has no output.weight (its output layer is the embeddings); transformers' loader
    makes an untied copy, which the dequantised folder must not keep."""
    from safetensors import safe_open

    from mrtui.backends.gguf_io import read_gguf_header

    assert "output.weight" not in {t.name for t in read_gguf_header(tiny_gguf).tensors}
    folder = tiny_dequantised
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is True
    with safe_open(str(folder / "model.safetensors"), "np") as f:
        assert "lm_head.weight" not in set(f.keys())
