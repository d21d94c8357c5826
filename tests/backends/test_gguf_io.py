"""GGUF export: metadata copied and overridden, tensors mapped, the result runs in llama.cpp."""

from __future__ import annotations

from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("gguf")

from mrtui.backends.base import Completion, Message, Request, SamplingParams  # noqa: E402
from mrtui.backends.gguf_io import (  # noqa: E402
    TinyQwen2Config,
    hf_config_to_overrides,
    read_gguf_header,
    read_gguf_metadata,
    tiny_qwen2_weights,
    write_gguf,
)

F32, F16 = 0, 1


@pytest.fixture(scope="module")
def base_meta(qwen_gguf: Path) -> dict:
    return read_gguf_metadata(qwen_gguf)


def small_config(base_meta: dict, **kw: object) -> TinyQwen2Config:
    return TinyQwen2Config(vocab_size=len(base_meta["tokenizer.ggml.tokens"]), **kw)  # type: ignore[arg-type]


def generate(path: Path, max_tokens: int = 24) -> Completion:
    pytest.importorskip("llama_cpp")
    from mrtui.backends.llamacpp import LlamaCppBackend

    with LlamaCppBackend(str(path), n_ctx=256, n_threads=1) as b:
        req = Request(
            "t",
            (Message("user", "Tell me something."),),
            SamplingParams(temperature=0.0, max_tokens=max_tokens),
        )
        (c,) = list(b.generate([req]))
    assert isinstance(c, Completion), c
    return c


def test_tiny_model_metadata(tiny_gguf: Path, base_meta: dict) -> None:
    meta = read_gguf_metadata(tiny_gguf)
    assert meta["general.architecture"] == "qwen2"
    assert meta["qwen2.block_count"] == 2
    assert meta["qwen2.embedding_length"] == 64
    assert meta["qwen2.feed_forward_length"] == 128
    assert meta["qwen2.attention.head_count"] == 4
    assert meta["qwen2.attention.head_count_kv"] == 2
    assert meta["qwen2.context_length"] == 32768
    assert meta["general.file_type"] == F16
    assert meta["general.name"].startswith("mrtui tiny qwen2")
    assert "general.size_label" not in meta and "general.finetune" not in meta
    for key in (
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.chat_template",
    ):
        assert meta[key] == base_meta[key], key
    assert 15_000_000 < tiny_gguf.stat().st_size < 30_000_000


def test_tiny_model_tensors(tiny_gguf: Path, base_meta: dict) -> None:
    tensors = {t.name: t for t in read_gguf_header(tiny_gguf).tensors}
    assert len(tensors) == 1 + 2 * 12 + 1  # embeddings, 2 blocks, final norm
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert tensors["token_embd.weight"].shape == (64, len(base_meta["tokenizer.ggml.tokens"]))
    assert tensors["blk.1.attn_k.weight"].shape == (64, 32)  # 2 kv heads x 16
    assert tensors["blk.0.attn_q.weight"].ggml_type == F16
    assert tensors["blk.0.attn_q.bias"].ggml_type == F32
    assert tensors["output_norm.weight"].ggml_type == F32


def test_tiny_model_writes_varied_text(tiny_gguf: Path) -> None:
    c = generate(tiny_gguf, max_tokens=32)
    assert c.completion_tokens == 32
    assert len(set(c.text)) > 15, c.text  # not one token over and over


def test_write_f32_with_overrides(tmp_path: Path, qwen_gguf: Path, base_meta: dict) -> None:
    cfg = small_config(base_meta, num_hidden_layers=1, tie_word_embeddings=False)
    overrides = {
        **hf_config_to_overrides(cfg.to_hf_config()),
        "context_length": 2048,  # short keys get the arch prefix
        "general.name": "custom export",
        "mrtui.source_run": "run-42",  # new keys get a type from their value
    }
    out = write_gguf(
        tmp_path / "m.gguf", tiny_qwen2_weights(cfg, seed=3), qwen_gguf, "qwen2", overrides, "f32"
    )
    meta = read_gguf_metadata(out)
    assert meta["qwen2.context_length"] == 2048
    assert meta["qwen2.block_count"] == 1
    assert meta["general.name"] == "custom export"
    assert meta["mrtui.source_run"] == "run-42"
    assert meta["general.file_type"] == F32
    tensors = {t.name: t for t in read_gguf_header(out).tensors}
    assert "output.weight" in tensors  # untied lm_head maps to output
    assert {t.ggml_type for t in tensors.values()} == {F32}
    assert not list(tmp_path.glob(".*.tmp"))
    assert generate(out).completion_tokens > 0


def test_layer_count_must_match(tmp_path: Path, qwen_gguf: Path, base_meta: dict) -> None:
    cfg = small_config(base_meta)
    with pytest.raises(ValueError, match="block_count"):
        write_gguf(tmp_path / "m.gguf", tiny_qwen2_weights(cfg), qwen_gguf, "qwen2", {})
    assert not (tmp_path / "m.gguf").exists()


def test_unknown_tensor_names_are_refused(tmp_path: Path, qwen_gguf: Path, base_meta: dict) -> None:
    cfg = small_config(base_meta)
    weights = tiny_qwen2_weights(cfg)
    weights["model.mystery.weight"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"no GGUF name for qwen2 tensors: model\.mystery"):
        write_gguf(
            tmp_path / "m.gguf",
            weights,
            qwen_gguf,
            "qwen2",
            hf_config_to_overrides(cfg.to_hf_config()),
        )


def test_vocab_must_match_the_tokenizer(tmp_path: Path, qwen_gguf: Path, base_meta: dict) -> None:
    cfg = TinyQwen2Config(vocab_size=1000)
    with pytest.raises(ValueError, match="tokenizer has"):
        write_gguf(
            tmp_path / "m.gguf",
            tiny_qwen2_weights(cfg),
            qwen_gguf,
            "qwen2",
            hf_config_to_overrides(cfg.to_hf_config()),
        )


def test_unknown_arch_is_refused(tmp_path: Path, qwen_gguf: Path) -> None:
    with pytest.raises(ValueError, match="unsupported arch 'mamba'"):
        write_gguf(tmp_path / "m.gguf", {}, qwen_gguf, "mamba", {})


def test_hf_config_for_the_tiny_model(base_meta: dict) -> None:
    cfg = small_config(base_meta)
    hf = cfg.to_hf_config(bos_token_id=151643, eos_token_id=151645)
    assert hf["model_type"] == "qwen2" and hf["architectures"] == ["Qwen2ForCausalLM"]
    assert cfg.head_dim == 16
    weights = tiny_qwen2_weights(cfg)
    assert weights["model.layers.0.self_attn.k_proj.weight"].shape == (32, 64)
    assert weights["model.embed_tokens.weight"].dtype == np.float32
    assert "lm_head.weight" not in weights


def test_a_tied_lm_head_is_not_written_twice(
    tmp_path: Path, qwen_gguf: Path, base_meta: dict
) -> None:
    cfg = small_config(base_meta, num_hidden_layers=1)
    weights = tiny_qwen2_weights(cfg)
    weights["lm_head.weight"] = weights["model.embed_tokens.weight"]  # as a tied state_dict has
    weights["model.rotary_emb.inv_freq"] = np.ones(8, np.float32)
    overrides = hf_config_to_overrides(cfg.to_hf_config())
    out = write_gguf(tmp_path / "m.gguf", weights, qwen_gguf, "qwen2", overrides)
    names = {t.name for t in read_gguf_header(out).tensors}
    assert "output.weight" not in names and "token_embd.weight" in names
    assert len(names) == 1 + 12 + 1
