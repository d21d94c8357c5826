"""GGUF export of every supported architecture, with the tokenizer read from the HF folder.

For each architecture a tiny random model (2 layers, hidden 64, the real Qwen tokenizer and its
151,936 embedding rows) is built by transformers from a config chosen to exercise what the
export must get right: grouped-query attention everywhere; a head size other than hidden/heads
(qwen3, mistral, gemma3); attention biases permuted with their weights and Llama 3.1 rope
scaling (llama); an untied output layer (qwen3, mistral); and for gemma3 a 16-token sliding
window on the first layer only (not llama.cpp's every-6th-layer default), a sliding rope base
other than llama.cpp's default, a final logit soft-cap and, for model_type gemma3, the language
model inside a multimodal checkpoint. Norm weights get noise so a norm that is mapped wrong
shows. ``initializer_range`` 0.1 (not 0.02) makes the blocks, not the embedding, decide the
prediction: logits spread ~0.8 nats and the median top-1 margin is ~0.13.

Each model is exported to f16 with ``base_gguf=None``, loaded by llama.cpp and fed the same
``N_TOKENS`` tokens; llama.cpp's top-1 must match transformers' at >= 99% of positions and every
logit must lie within 2% of the logits' spread. Measured here (320 positions): 100% for qwen2,
mistral and gemma3, 99.7% for qwen3 and gemma3_text, 99.4% for llama, every miss a near-tie
(transformers' top-2 margin under 0.001 nats, where f16 rounding decides); the largest logit
difference 0.009 (spread 0.8). Each of these mistakes fails it (measured by leaving one out):
no q/k permutation (llama 30%, mistral 18% top-1), no rope_freqs (33%), gemma3 norms without
+1 (0%), no sliding window (10%), llama.cpp's default layer pattern (21%), llama.cpp's default
sliding rope base (80%); without the soft-cap the top-1 stays but logits move by up to 0.97.
"""

from __future__ import annotations

import json
import shutil
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

from mrtui.backends.base import BackendError  # noqa: E402
from mrtui.backends.export import (  # noqa: E402
    SUPPORTED_ARCHS,
    ExportResult,
    export_gguf,
    hf_arch,
    hf_text_config,
)
from mrtui.backends.gguf_io import (  # noqa: E402
    hf_config_to_overrides,
    interleave_rotary,
    read_gguf_header,
    read_gguf_metadata,
)
from mrtui.backends.gguf_vocab import pre_tokenizer_name  # noqa: E402

N_TOKENS = 320
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
TEXT = (
    "Meta-Rewarding language models judge their own answers and learn from those judgements. "
    "Each iteration the actor writes several responses to every prompt, the judge scores each "
    "response several times, and a meta-judge compares pairs of judgements. In run 20261206 "
    "the 3 judges gave 4.25, 3.5 and 12345 points; 0.5B models barely separate answers.\n\n"
    "def pairs(scores: dict[str, float]) -> tuple[str, str]:\n"
    "    ranked = sorted(scores, key=scores.get)\n"
    "    return ranked[-1], ranked[0]\n\n"
    "Quantization keeps the model small: eight-bit blocks lose almost nothing, four-bit "
    "K-quants a little more. Ünïcödé, 日本語 and emoji 🦙 must survive the round trip too. "
) * 2
_COMMON: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 4096,
    "initializer_range": 0.1,
}
_GEMMA3_TEXT: dict[str, Any] = {
    **_COMMON,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "query_pre_attn_scalar": 32,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "full_attention"],
    "final_logit_softcapping": 5.0,
    "rope_parameters": {
        "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 20_000.0},
    },
}
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500_000.0,
    "factor": 32.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 64,
}


def hf_config(model_type: str, vocab_size: int) -> Any:
    """The transformers config of the tiny model for ``model_type``."""
    c = {**_COMMON, "vocab_size": vocab_size}
    if model_type == "qwen2":
        return transformers.Qwen2Config(**c, num_key_value_heads=2, tie_word_embeddings=True)
    if model_type == "qwen3":
        return transformers.Qwen3Config(
            **c, num_key_value_heads=2, head_dim=32, tie_word_embeddings=False
        )
    if model_type == "llama":
        return transformers.LlamaConfig(
            **c,
            num_key_value_heads=2,
            attention_bias=True,
            tie_word_embeddings=True,
            rope_parameters=LLAMA3_ROPE,
        )
    if model_type == "mistral":
        return transformers.MistralConfig(
            **c, num_key_value_heads=1, head_dim=32, sliding_window=None, tie_word_embeddings=False
        )
    text = {**_GEMMA3_TEXT, "vocab_size": vocab_size}
    if model_type == "gemma3_text":
        return transformers.Gemma3TextConfig(**text)
    assert model_type == "gemma3"
    text["final_logit_softcapping"] = None  # transformers' multimodal class never applies it
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
    }
    return transformers.Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)


@dataclass
class Tiny:
    folder: Path
    logits: Any  # transformers' logits for the token sequence, float32 (N_TOKENS, vocab)


@pytest.fixture(scope="module")
def qwen_tokenizer(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Qwen tokenizer as HF files, read from the tiny GGUF by transformers (the same
    conversion ``materialize_hf`` makes, without dequantizing a model we do not need)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        tiny_gguf.parent, gguf_file=tiny_gguf.name, tokenizer_type="qwen2"
    )
    folder = tmp_path_factory.mktemp("qwen-tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def token_ids(qwen_tokenizer: Path) -> list[int]:
    ids = transformers.AutoTokenizer.from_pretrained(qwen_tokenizer)(TEXT)["input_ids"]
    assert len(ids) >= N_TOKENS
    return ids[:N_TOKENS]


@pytest.fixture(scope="module")
def vocab_size(tiny_gguf: Path) -> int:
    return len(read_gguf_metadata(tiny_gguf)["tokenizer.ggml.tokens"])


@pytest.fixture(scope="module")
def tiny(
    qwen_tokenizer: Path,
    token_ids: list[int],
    vocab_size: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], Tiny]:
    """model_type → the tiny model saved as an HF folder with the Qwen tokenizer (built once)."""
    root = tmp_path_factory.mktemp("tiny-archs")
    built: dict[str, Tiny] = {}

    def get(model_type: str) -> Tiny:
        if model_type not in built:
            config = hf_config(model_type, vocab_size)
            torch.manual_seed(0)
            if model_type == "gemma3":
                model = transformers.Gemma3ForConditionalGeneration(config)
            else:
                model = transformers.AutoModelForCausalLM.from_config(config)
            noise = torch.Generator().manual_seed(1)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name.endswith("norm.weight"):
                        p.add_(0.1 * torch.randn(p.shape, generator=noise))
            model.eval()
            folder = root / model_type
            model.save_pretrained(folder)
            for f in TOKENIZER_FILES:
                shutil.copy(qwen_tokenizer / f, folder / f)
            with torch.no_grad():
                logits = model(torch.tensor([token_ids])).logits[0].float().numpy()
            built[model_type] = Tiny(folder, logits)
        return built[model_type]

    return get


@pytest.fixture(scope="module")
def exported(
    tiny: Callable[[str], Tiny], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], ExportResult]:
    out_dir = tmp_path_factory.mktemp("exported-archs")
    done: dict[str, ExportResult] = {}

    def get(model_type: str) -> ExportResult:
        if model_type not in done:
            out = out_dir / f"{model_type}-f16.gguf"
            done[model_type] = export_gguf(tiny(model_type).folder, None, out, "f16")
        return done[model_type]

    return get


def llama_logits(path: Path, ids: list[int]) -> Any:
    llm = llama_cpp.Llama(
        model_path=str(path), logits_all=True, n_ctx=512, n_threads=1, verbose=False
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def llama_tokens(path: Path, text: str) -> list[int]:
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return vocab.tokenize(text.encode(), add_bos=False, special=False)
    finally:
        vocab.close()


# What each architecture's file must say beyond the shared hyperparameters.
EXPECTED_METADATA: dict[str, dict[str, Any]] = {
    "qwen2": {"qwen2.attention.head_count_kv": 2},
    "qwen3": {"qwen3.attention.key_length": 32, "qwen3.attention.value_length": 32},
    "llama": {"llama.rope.dimension_count": 16, "llama.rope.freq_base": 500_000.0},
    "mistral": {"llama.rope.dimension_count": 32, "llama.attention.key_length": 32},
    "gemma3_text": {
        "gemma3.attention.sliding_window": 16,
        "gemma3.attention.sliding_window_pattern": [True, False],
        "gemma3.rope.freq_base": 1_000_000.0,
        "gemma3.rope.freq_base_swa": 20_000.0,
        "gemma3.final_logit_softcapping": 5.0,
        "gemma3.attention.key_length": 32,
    },
}
EXPECTED_METADATA["gemma3"] = {
    k: v for k, v in EXPECTED_METADATA["gemma3_text"].items() if "softcap" not in k
}


@pytest.mark.parametrize("model_type", list(SUPPORTED_ARCHS))
def test_export_predicts_what_transformers_predicts(
    model_type: str,
    tiny: Callable[[str], Tiny],
    exported: Callable[[str], ExportResult],
    token_ids: list[int],
) -> None:
    want = tiny(model_type).logits
    result = exported(model_type)
    have = llama_logits(result.path, token_ids)
    top1 = float((have.argmax(axis=1) == want.argmax(axis=1)).mean())
    max_diff, spread = float(np.abs(have - want).max()), float(want.std())
    print(f"\n{model_type}: top-1 {top1:.2%}, max |diff| {max_diff:.4f} (std {spread:.3f})")
    assert top1 >= 0.99
    assert max_diff < 0.02 * spread

    arch = SUPPORTED_ARCHS[model_type]
    meta = read_gguf_metadata(result.path)
    assert meta["general.architecture"] == arch
    assert meta["general.name"] == model_type  # the folder's name
    assert meta[f"{arch}.block_count"] == 2
    assert meta[f"{arch}.embedding_length"] == 64
    for key, value in EXPECTED_METADATA[model_type].items():
        assert meta[key] == pytest.approx(value), key
    tensors = {t.name for t in read_gguf_header(result.path).tensors}
    untied = not hf_config(model_type, 8).get_text_config().tie_word_embeddings
    assert ("output.weight" in tensors) == untied
    assert ("rope_freqs.weight" in tensors) == (model_type == "llama")
    if model_type == "gemma3":  # what transformers computes: no soft-cap (see hf_config)
        assert "gemma3.final_logit_softcapping" not in meta
    assert not any(t.startswith(("v.", "mm.")) for t in tensors)  # no vision tower


def test_tokenizer_from_the_folder_is_what_the_base_gguf_has(
    tiny: Callable[[str], Tiny],
    exported: Callable[[str], ExportResult],
    tiny_gguf: Path,
    qwen_tokenizer: Path,
    token_ids: list[int],
    tmp_path: Path,
) -> None:
    """llama.cpp's converter wrote the base file's tokenizer from the real Qwen2.5 folder; ours,
    read from the HF files transformers made of it, must say the same, key by key."""
    own = read_gguf_metadata(exported("qwen2").path)
    with_base = export_gguf(tiny("qwen2").folder, tiny_gguf, tmp_path / "b.gguf", "f16")
    base = read_gguf_metadata(tiny_gguf)
    tokenizer_keys = sorted(k for k in base if k.startswith("tokenizer."))
    assert tokenizer_keys == sorted(k for k in own if k.startswith("tokenizer."))
    for key in tokenizer_keys:
        assert own[key] == base[key], key
    assert own["tokenizer.ggml.pre"] == "qwen2"
    assert own["tokenizer.chat_template"] == (qwen_tokenizer / "chat_template.jinja").read_text()
    assert llama_tokens(exported("qwen2").path, TEXT)[:N_TOKENS] == token_ids
    # the same weights through the base file make the same tensors and the same predictions
    assert (
        read_gguf_header(with_base.path).tensors == read_gguf_header(exported("qwen2").path).tensors
    )
    have, want = llama_logits(with_base.path, token_ids), tiny("qwen2").logits
    assert float((have.argmax(axis=1) == want.argmax(axis=1)).mean()) >= 0.99


def test_pre_tokenizers_are_told_by_their_split_regex(qwen_tokenizer: Path) -> None:
    """Llama 3 splits digits in runs of up to three, Qwen one by one; a ByteLevel step that
    splits again, or an unknown regex, is not guessed at."""
    spec = json.loads((qwen_tokenizer / "tokenizer.json").read_text())
    assert pre_tokenizer_name(spec) == "qwen2"
    split, byte_level = spec["pre_tokenizer"]["pretokenizers"]
    qwen_regex = split["pattern"]["Regex"]
    split["pattern"]["Regex"] = qwen_regex.replace(r"|\p{N}|", r"|\p{N}{1,3}|")
    assert pre_tokenizer_name(spec) == "llama-bpe"
    split["pattern"]["Regex"] = qwen_regex.replace(r"|\p{N}|", r"|\p{N}+|")
    assert pre_tokenizer_name(spec) is None
    split["pattern"]["Regex"] = qwen_regex
    byte_level["use_regex"] = True
    assert pre_tokenizer_name(spec) is None


@pytest.mark.parametrize(
    ("model_type", "dummy_prefix"), [("gemma3_text", False), ("mistral", True)]
)
def test_sentencepiece_tokenizer(model_type: str, dummy_prefix: bool, tmp_path: Path) -> None:
    """A SentencePiece tokenizer.model (trained here: byte fallback, digits split; with Gemma's
    no-leading-space and Llama 2/Mistral's leading-space normalisation) becomes a llama.cpp
    vocabulary that tokenizes as sentencepiece does, padded up to the embedding rows."""
    spm = pytest.importorskip("sentencepiece", reason="reading tokenizer.model needs it")
    folder = tmp_path / model_type
    folder.mkdir()
    (tmp_path / "corpus.txt").write_text(TEXT + TEXT.upper() + TEXT.replace(" ", "\n"))
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "corpus.txt"),
        model_prefix=str(folder / "tokenizer"),
        vocab_size=384,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=dummy_prefix,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    assert sp.vocab_size() == 384  # the embedding has 16 padding rows more
    config = hf_config(model_type, 400)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = 2, 1, 0
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(folder)
    ids = sp.encode(TEXT)[:N_TOKENS]

    result = export_gguf(folder, None, tmp_path / "m.gguf", "f16")
    meta = read_gguf_metadata(result.path)
    assert meta["tokenizer.ggml.model"] == "llama"
    assert meta["tokenizer.ggml.bos_token_id"] == 2 and meta["tokenizer.ggml.add_bos_token"]
    assert meta["tokenizer.ggml.token_type"][-1] == 5  # unused padding
    assert meta.get("tokenizer.ggml.add_space_prefix", True) == dummy_prefix
    assert llama_tokens(result.path, TEXT)[:N_TOKENS] == ids
    with torch.no_grad():
        want = model(torch.tensor([ids])).logits[0].float().numpy()
    have = llama_logits(result.path, ids)
    assert float((have.argmax(axis=1) == want.argmax(axis=1)).mean()) >= 0.99


def test_a_transformers_4_gemma3_config_gets_gemma3s_defaults() -> None:
    """transformers 4 saved only what differs from Gemma3TextConfig's defaults in a multimodal
    config's text_config (gemma-3-4b's config.json looks like this); the rest are filled in."""
    config = {
        "model_type": "gemma3",
        "text_config": {
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "model_type": "gemma3_text",
            "num_hidden_layers": 34,
            "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
            "sliding_window": 1024,
        },
        "vision_config": {"model_type": "siglip_vision_model"},
    }
    assert hf_arch(config) == "gemma3"
    overrides = hf_config_to_overrides(hf_text_config(config), "gemma3")
    assert overrides == {
        "gemma3.block_count": 34,
        "gemma3.context_length": 131072,
        "gemma3.embedding_length": 2560,
        "gemma3.feed_forward_length": 10240,
        "gemma3.attention.head_count": 8,
        "gemma3.attention.head_count_kv": 4,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.attention.layer_norm_rms_epsilon": 1e-6,
        "gemma3.rope.freq_base": 1_000_000.0,
        "gemma3.rope.freq_base_swa": 10_000.0,
        "gemma3.rope.scaling.type": "linear",
        "gemma3.rope.scaling.factor": 8.0,
        "gemma3.attention.sliding_window": 1024,
        "gemma3.attention.sliding_window_pattern": None,  # every 6th global: llama.cpp's default
        "gemma3.final_logit_softcapping": None,
    }


def test_rotary_rows_are_interleaved_per_head() -> None:
    rows = np.arange(16, dtype=np.float32)  # 2 heads of 8: pairs (0, 4), (1, 5), ... per head
    got = interleave_rotary(rows, 2)
    assert got.tolist() == [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]
    weights = np.arange(32, dtype=np.float32).reshape(16, 2)
    assert interleave_rotary(weights, 2)[:, 0].tolist() == (got * 2).tolist()
    with pytest.raises(ValueError, match="do not split into 3 heads"):
        interleave_rotary(rows, 3)


# --- refusals ------------------------------------------------------------------------------


def config_only(folder: Path, config: dict[str, Any]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def raises(match: str) -> Any:
    return pytest.raises(BackendError, match=match)


def test_unsupported_model_type_names_the_supported_ones(tmp_path: Path) -> None:
    folder = config_only(tmp_path / "m", {"model_type": "gpt_neox", "num_hidden_layers": 2})
    with pytest.raises(BackendError) as e:
        export_gguf(folder, None, tmp_path / "m.gguf", "f16")
    assert str(e.value) == (
        "GGUF export does not support model_type 'gpt_neox'; supported: qwen2, qwen3, llama, "
        "mistral, gemma3_text, gemma3"
    )


@pytest.mark.parametrize(
    ("model_type", "change", "match"),
    [
        ("gemma3_text", {"query_pre_attn_scalar": 64}, r"by 1/sqrt\(32\) but .* is 64"),
        ("gemma3_text", {"attn_logit_softcapping": 50.0}, "no attention logit soft-cap"),
        ("gemma3_text", {"use_bidirectional_attention": True}, "causal language model"),
        ("gemma3_text", {"hidden_activation": "silu"}, "computes gelu_pytorch_tanh .* 'silu'"),
        ("qwen2", {"use_sliding_window": True}, "sliding-window attention"),
        ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
        ("qwen3", {"rope_parameters": {"rope_type": "llama3"}}, r"rope scaling \('llama3'\)"),
    ],
)
def test_configs_llamacpp_would_compute_differently_are_refused(
    model_type: str, change: dict[str, Any], match: str, tmp_path: Path
) -> None:
    config = {**hf_config(model_type, 1000).to_dict(), **change}
    folder = config_only(tmp_path / "m", config)
    with raises(match):
        export_gguf(folder, None, tmp_path / "m.gguf", "f16")


def weights_only(source: Path, folder: Path) -> Path:
    """A copy of ``source`` without its tokenizer (the weights linked, not copied)."""
    folder.mkdir()
    shutil.copy(source / "config.json", folder / "config.json")
    (folder / "model.safetensors").symlink_to(source / "model.safetensors")
    return folder


def test_tokenizers_the_export_cannot_read_are_refused(
    tiny: Callable[[str], Tiny], tmp_path: Path
) -> None:
    source = tiny("qwen2").folder
    bare = weights_only(source, tmp_path / "bare")
    with raises("has no tokenizer .* or pass the GGUF the model came from as base_gguf"):
        export_gguf(bare, None, tmp_path / "m.gguf", "f16")

    odd = weights_only(source, tmp_path / "odd")
    spec = json.loads((source / "tokenizer.json").read_text())
    spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{L}+|\s+"
    (odd / "tokenizer.json").write_text(json.dumps(spec))
    with raises(r"which llama.cpp pre-tokenizer .*\(known: qwen2, llama-bpe, .*\); pass the GGUF"):
        export_gguf(odd, None, tmp_path / "m.gguf", "f16")

    spm_style = weights_only(source, tmp_path / "spm-style")  # what transformers makes of Gemma
    spec["model"]["byte_fallback"] = True
    (spm_style / "tokenizer.json").write_text(json.dumps(spec))
    with raises("SentencePiece-style tokenizer but the folder has no tokenizer.model"):
        export_gguf(spm_style, None, tmp_path / "m.gguf", "f16")
    assert not list(tmp_path.glob("*.gguf"))


def test_sentencepiece_without_the_package_names_the_alternatives(
    tiny: Callable[[str], Tiny], tmp_path: Path
) -> None:
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("sentencepiece is installed")
    folder = weights_only(tiny("gemma3_text").folder, tmp_path / "spm")
    (folder / "tokenizer.model").write_bytes(b"not read without sentencepiece")
    with raises("pip install sentencepiece.*base_gguf"):
        export_gguf(folder, None, tmp_path / "m.gguf", "f16")
