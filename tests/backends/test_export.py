"""HF model folder → GGUF: llama.cpp on the export predicts what the torch model predicts.

The tiny HF model has the weights of the ``tiny_gguf`` fixture (``tiny_qwen2_weights``, seed 0,
the real Qwen vocabulary) except that the tied embedding is scaled by ``EMBED_SCALE`` and
``rope_theta`` differs from the base file's (so the override is tested). Random tiny weights give
flat logits: the torch top-1 beats the runner-up by a median ~0.15 standard deviations of the
logits, so rounding flips some near-ties even when the export is right. Scaling the embedding
by 3 widens the logits (std ~0.8 → ~2.4 nats) while the blocks still decide the prediction (only
~3% of top-1s repeat the input token; zeroing the second block's outputs changes ~90% of them).
Much larger scales make the model predict its input token, which would not test the blocks.

So the quantized types are judged on the "clear" positions, where the torch margin is at least
``CLEAR_MARGIN`` nats (60% of the 400 positions), and loosely on all of them. Measured here:
f16 99.75% of all positions (one near-tie) and 100% of the clear ones, every logit within 0.021
(logit std 2.4); q8_0 92% / 100%; q4_k_m 70.5% / 88% (the 64-wide rows are not multiples of 256,
so llama.cpp falls back to q5_0 for most matrices). On the real Qwen2.5-Coder 0.5B (not a test)
f16 agreed on 100%, q8_0 98% and q4_k_m 93.5% of 400 text positions, every miss a near-tie.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch", reason="needs the training extra: pip install 'mrtui[train]'")
transformers = pytest.importorskip("transformers", reason="needs 'mrtui[train]'")
pytest.importorskip("safetensors")
pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp", reason="needs llama-cpp-python: 'mrtui[llama]'")

from mrtui.backends.base import (  # noqa: E402
    BackendError,
    Completion,
    Message,
    Request,
    SamplingParams,
)
from mrtui.backends.export import ExportResult, export_gguf, load_hf_weights  # noqa: E402
from mrtui.backends.gguf_io import (  # noqa: E402
    TinyQwen2Config,
    hf_config_to_overrides,
    read_gguf_header,
    read_gguf_metadata,
    tiny_qwen2_weights,
)

EMBED_SCALE = 3.0
CLEAR_MARGIN = 0.25  # nats between the torch top-1 and top-2 (~0.1 std of the logits)
N_TOKENS = 200  # per sequence; two sequences
FILE_TYPE = {"f16": 1, "q8_0": 7, "q4_k_m": 15}  # llama_ftype stored in general.file_type
TEXT = (
    "Meta-Rewarding language models judge their own answers and learn from those judgements. "
    "Each iteration the actor writes several responses to every prompt, the judge scores each "
    "response several times, and a meta-judge compares pairs of judgements. The best and worst "
    "responses become preference pairs for DPO, and the trained weights go back to GGUF so "
    "llama.cpp can serve the next iteration.\n\n"
    "def pairs(scores: dict[str, float]) -> tuple[str, str]:\n"
    "    ranked = sorted(scores, key=scores.get)\n"
    "    return ranked[-1], ranked[0]\n\n"
    "Quantization keeps the model small: eight-bit blocks lose almost nothing, four-bit "
    "K-quants a little more. The tokenizer and the chat template are copied from the base "
    "file, byte for byte, so prompts render exactly as before training. "
) * 2


@dataclass
class TinyHF:
    folder: Path
    config: dict[str, Any]
    model: Any  # transformers Qwen2ForCausalLM


@dataclass
class Reference:
    sequences: list[list[int]]
    logits: list[Any]  # torch logits per sequence, float32 numpy (n_tokens, vocab)


@pytest.fixture(scope="module")
def tiny_hf(qwen_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> TinyHF:
    meta = read_gguf_metadata(qwen_gguf)
    cfg = TinyQwen2Config(vocab_size=len(meta["tokenizer.ggml.tokens"]))
    weights = tiny_qwen2_weights(cfg, seed=0)
    weights["model.embed_tokens.weight"] = weights["model.embed_tokens.weight"] * EMBED_SCALE
    config = {
        k: v for k, v in cfg.to_hf_config().items() if k not in ("architectures", "model_type")
    }
    config["rope_theta"] = 500_000.0  # differs from the base file's 1e6: must be carried over
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**config))
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    model.eval()
    folder = tmp_path_factory.mktemp("tiny-hf")
    model.save_pretrained(folder)  # safetensors; the tied lm_head is not stored
    return TinyHF(folder, json.loads((folder / "config.json").read_text()), model)


@pytest.fixture(scope="module")
def reference(tiny_hf: TinyHF, tiny_gguf: Path) -> Reference:
    vocab = llama_cpp.Llama(model_path=str(tiny_gguf), vocab_only=True, verbose=False)
    try:
        text = vocab.tokenize(TEXT.encode(), add_bos=False, special=False)
    finally:
        vocab.close()
    assert len(text) >= N_TOKENS
    rng = np.random.default_rng(1)
    sequences = [rng.integers(0, 5000, N_TOKENS).tolist(), text[:N_TOKENS]]
    with torch.no_grad():
        logits = [tiny_hf.model(torch.tensor([s])).logits[0].float().numpy() for s in sequences]
    return Reference(sequences, logits)


@pytest.fixture(scope="module")
def exported(
    tiny_hf: TinyHF, qwen_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], ExportResult]:
    out_dir = tmp_path_factory.mktemp("exported")
    done: dict[str, ExportResult] = {}

    def get(outtype: str) -> ExportResult:
        if outtype not in done:
            done[outtype] = export_gguf(
                tiny_hf.folder, qwen_gguf, out_dir / f"tiny-{outtype}.gguf", outtype, n_threads=2
            )
        return done[outtype]

    return get


def llama_logits(path: Path, sequences: list[list[int]]) -> list[Any]:
    llm = llama_cpp.Llama(
        model_path=str(path), logits_all=True, n_ctx=256, n_threads=2, verbose=False
    )
    try:
        out = []
        for seq in sequences:
            llm.reset()
            llm.eval(seq)
            out.append(np.array(llm.scores[: len(seq)], dtype=np.float32))
        return out
    finally:
        llm.close()


@dataclass
class Agreement:
    overall: float
    clear: float  # on positions where the torch top-1 margin is >= CLEAR_MARGIN
    clear_share: float
    max_abs_diff: float
    logit_std: float


def agreement(ref: Reference, got: list[Any]) -> Agreement:
    want = np.concatenate(ref.logits)
    have = np.concatenate(got)
    top2 = np.partition(want, -2, axis=1)[:, -2:]
    clear = np.abs(top2[:, 1] - top2[:, 0]) >= CLEAR_MARGIN
    same = have.argmax(axis=1) == want.argmax(axis=1)
    return Agreement(
        overall=float(same.mean()),
        clear=float(same[clear].mean()),
        clear_share=float(clear.mean()),
        max_abs_diff=float(np.abs(have - want).max()),
        logit_std=float(want.std()),
    )


@pytest.mark.parametrize(
    ("outtype", "min_overall", "min_clear"),
    [("f16", 0.99, 0.99), ("q8_0", 0.90, 0.95), ("q4_k_m", 0.30, 0.30)],
)
def test_export_predicts_what_the_torch_model_predicts(
    exported: Callable[[str], ExportResult],
    reference: Reference,
    outtype: str,
    min_overall: float,
    min_clear: float,
) -> None:
    result = exported(outtype)
    a = agreement(reference, llama_logits(result.path, reference.sequences))
    print(f"\n{outtype}: {a} export {result.wall_s:.2f} s, {result.path.stat().st_size} bytes")
    assert a.overall >= min_overall, a
    assert a.clear >= min_clear, a
    assert a.clear_share > 0.5, a  # the clear positions are most of them, not a cherry-pick
    if outtype == "f16":
        assert a.max_abs_diff < 0.02 * a.logit_std, a  # every logit, not just the top-1


@pytest.mark.parametrize("outtype", ["f16", "q8_0", "q4_k_m"])
def test_exported_file(
    exported: Callable[[str], ExportResult], tiny_hf: TinyHF, qwen_gguf: Path, outtype: str
) -> None:
    import hashlib

    result = exported(outtype)
    assert result.outtype == outtype
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert result.n_tensors == 1 + 2 * 12 + 1  # embeddings, 2 blocks, final norm
    tensors = {t.name for t in read_gguf_header(result.path).tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    meta, base = read_gguf_metadata(result.path), read_gguf_metadata(qwen_gguf)
    assert meta["general.file_type"] == FILE_TYPE[outtype]
    assert meta["qwen2.block_count"] == 2
    assert meta["qwen2.embedding_length"] == 64
    assert meta["qwen2.rope.freq_base"] == 500_000.0  # from config.json's rope_parameters
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.chat_template"):
        assert meta[key] == base[key], key
    leftovers = [p.name for p in result.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # temporary files renamed or removed


def test_round_trip_through_the_llamacpp_backend(exported: Callable[[str], ExportResult]) -> None:
    from mrtui.backends.llamacpp import LlamaCppBackend

    path = exported("q8_0").path
    req = Request(
        "r",
        (Message("user", "Tell me something."),),
        SamplingParams(temperature=0.0, max_tokens=16),
    )
    with LlamaCppBackend(str(path), n_ctx=256, n_threads=1) as backend:
        (c,) = list(backend.generate([req]))
    assert isinstance(c, Completion), c
    assert c.completion_tokens > 0 and c.text
    assert c.prompt_tokens > 5  # the copied chat template rendered the prompt


def test_rope_theta_is_read_from_rope_parameters() -> None:
    config = {
        "num_hidden_layers": 2,
        "rope_parameters": {"rope_type": "default", "rope_theta": 5e5},
    }
    assert hf_config_to_overrides(config) == {
        "qwen2.block_count": 2,
        "qwen2.rope.freq_base": 5e5,
    }
    assert hf_config_to_overrides({"rope_theta": 1e4})["qwen2.rope.freq_base"] == 1e4
    nulls = {"rope_theta": None, "rms_norm_eps": None, "rope_parameters": {"rope_theta": 7.0}}
    assert hf_config_to_overrides(nulls) == {"qwen2.rope.freq_base": 7.0}  # null deletes nothing


# --- errors --------------------------------------------------------------------------------


def write_folder(
    folder: Path, config: dict[str, Any], tensors: dict[str, Any] | None = None
) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if tensors is not None:
        save_file(tensors, str(folder / "model.safetensors"))
    return folder


def small_tensors(vocab: int = 1000) -> dict[str, Any]:
    cfg = TinyQwen2Config(vocab_size=vocab)
    return {k: torch.from_numpy(v) for k, v in tiny_qwen2_weights(cfg).items()}


def small_config(vocab: int = 1000, **kw: Any) -> dict[str, Any]:
    return {**TinyQwen2Config(vocab_size=vocab).to_hf_config(), **kw}


def raises(match: str) -> Any:
    return pytest.raises(BackendError, match=match)


def test_missing_or_wrong_folders(tmp_path: Path, qwen_gguf: Path) -> None:
    out = tmp_path / "out" / "m.gguf"
    with raises("model folder not found"):
        export_gguf(tmp_path / "nope", qwen_gguf, out)
    (tmp_path / "empty").mkdir()
    with raises("no config.json"):
        export_gguf(tmp_path / "empty", qwen_gguf, out)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with raises("LoRA adapter, not a full model"):
        export_gguf(adapter, qwen_gguf, out)
    with raises("no \\*.safetensors weights"):
        export_gguf(write_folder(tmp_path / "noweights", small_config()), qwen_gguf, out)
    with raises("base GGUF not found"):
        export_gguf(tmp_path / "noweights", tmp_path / "base.gguf", out)
    with raises("unsupported GGUF type 'q3_k'"):
        export_gguf(tmp_path / "noweights", qwen_gguf, out, "q3_k")
    assert not out.parent.exists()


def test_unsupported_architectures(tmp_path: Path, qwen_gguf: Path) -> None:
    """The supported ones are tested in test_export_archs.py."""
    folder = write_folder(tmp_path / "m", small_config(model_type="gpt_neox"))
    with raises("does not support model_type 'gpt_neox'; supported: qwen2, qwen3, llama, mistral"):
        export_gguf(folder, qwen_gguf, tmp_path / "m.gguf")
    gemma3 = small_config(model_type="gemma3_text", hidden_act="gelu_pytorch_tanh")
    gemma = write_folder(tmp_path / "g", gemma3)
    with raises("is a qwen2 model but the trained model is gemma3"):
        export_gguf(gemma, qwen_gguf, tmp_path / "g.gguf")


def test_rope_scaling_is_refused(tmp_path: Path, qwen_gguf: Path) -> None:
    rope = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}
    folder = write_folder(tmp_path / "m", small_config(rope_parameters=rope))
    with raises("rope scaling \\('yarn'\\)"):
        export_gguf(folder, qwen_gguf, tmp_path / "m.gguf")


def test_vocabulary_must_match_the_base(tmp_path: Path, qwen_gguf: Path) -> None:
    folder = write_folder(tmp_path / "m", small_config(), small_tensors(vocab=1000))
    out = tmp_path / "out" / "m.gguf"
    with raises("token_embd has 1000 rows but the tokenizer has"):
        export_gguf(folder, qwen_gguf, out, "q8_0")
    assert list(out.parent.iterdir()) == []  # no temporary files left behind


def test_untied_model_needs_its_head(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "m", small_config(tie_word_embeddings=False), small_tensors())
    with raises("no lm_head.weight"):
        load_hf_weights(folder, tied=False)
    assert "lm_head.weight" not in load_hf_weights(folder, tied=True)


def test_bf16_weights_become_float32(tmp_path: Path) -> None:
    tensors = {k: v.to(torch.bfloat16) for k, v in small_tensors().items()}
    folder = write_folder(tmp_path / "m", small_config(), tensors)
    got = load_hf_weights(folder, tied=True)
    assert set(got) == set(tensors)
    for key, t in tensors.items():
        assert got[key].dtype == np.float32
        np.testing.assert_array_equal(got[key], t.float().numpy())


def test_sharded_folder(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    tensors = small_tensors()
    folder = write_folder(tmp_path / "m", small_config())
    keys = sorted(tensors)
    half = {
        "model-00001-of-00002.safetensors": keys[:10],
        "model-00002-of-00002.safetensors": keys[10:],
    }
    weight_map = {}
    for file, names in half.items():
        save_file({k: tensors[k] for k in names}, str(folder / file))
        weight_map.update(dict.fromkeys(names, file))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert set(load_hf_weights(folder, tied=True)) == set(keys)


def test_values_beyond_f16_go_through_f32(tiny_hf: TinyHF, qwen_gguf: Path, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    tensors = load_hf_weights(tiny_hf.folder, tied=True)
    tensors["model.layers.0.mlp.up_proj.weight"][0, 0] = 1e5  # f16 overflows at 65504
    folder = write_folder(tmp_path / "m", tiny_hf.config)
    save_file(tensors, str(folder / "model.safetensors"))
    with raises("model.layers.0.mlp.up_proj.weight has values beyond the f16 range"):
        export_gguf(folder, qwen_gguf, tmp_path / "m-f16.gguf", "f16")
    result = export_gguf(folder, qwen_gguf, tmp_path / "m-q8.gguf", "q8_0", n_threads=2)
    assert read_gguf_metadata(result.path)["general.file_type"] == FILE_TYPE["q8_0"]
