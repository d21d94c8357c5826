"""DPO training on the tiny random Qwen2: GGUF → HF folder, LoRA and full fine-tunes with TRL.

The tiny model is converted once per module; each training run takes two optimizer steps on
eight short pairs. Settings and metric mapping are tested without the training extra.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from probes import modules_after

from mrtui.backends.base import BackendError
from mrtui.backends.training import (
    DPOSettings,
    PreferencePair,
    StepMetrics,
    TrainingBackend,
    TrainingError,
    TrainResult,
)

PAIRS = [
    PreferencePair(f"pair-{i}", "actor" if i % 4 else "judge", prompt, chosen, rejected)
    for i, (prompt, chosen, rejected) in enumerate(
        [
            ("What is 2+2?", "4.", "Numbers are hard; it might be 5, or 22."),
            ("Capital of France?", "Paris.", "France is a country in Europe with many cities."),
            ("Say hello.", "Hello!", "I would rather not greet anyone today."),
            ("Name a primary colour.", "Red.", "Colours are a social construct, so none."),
            ("Reverse 'abc'.", "cba", "abc reversed is abc, because letters stay put."),
            ("Is water wet?", "Yes.", "That depends on who you ask and on the weather."),
            ("Spell 'cat'.", "c-a-t", "k-a-t, most likely, though I am not sure."),
            ("Score this: 'ok'.", "Score: 2", "It is a response. Score: 5"),
        ]
    )
]
BETA = 0.1


# --- no training extra needed ------------------------------------------------------------


def test_settings_validate_and_describe_themselves() -> None:
    s = DPOSettings()
    assert (s.beta, s.lora, s.bf16, s.loss_type, s.max_steps) == (0.1, True, False, "sigmoid", -1)
    assert set(DPOSettings.help()) == set(s.to_dict()) and all(DPOSettings.help().values())
    json.dumps(s.to_dict())  # recorded in the event log as it is
    for bad in (
        {"beta": 0},
        {"beta": math.nan},
        {"learning_rate": 0},
        {"epochs": 0},
        {"batch_size": 1.5},
        {"grad_accum": True},
        {"max_length": 4},
        {"lora_dropout": 1.0},
        {"lora_targets": "q_proj,,v_proj"},
        {"max_steps": 0},
        {"loss_type": "dpo"},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            DPOSettings(**bad)  # type: ignore[arg-type]
    assert DPOSettings(max_length=None).max_length is None


def test_expected_steps_counts_like_the_trainer() -> None:
    assert DPOSettings(batch_size=2).expected_steps(8) == 4
    assert DPOSettings(batch_size=3).expected_steps(8) == 3
    assert DPOSettings(batch_size=2, grad_accum=3, epochs=2).expected_steps(8) == 4
    assert DPOSettings(max_steps=7).expected_steps(8) == 7
    assert DPOSettings().expected_steps(0) == 0


def test_pairs_are_checked() -> None:
    with pytest.raises(ValueError, match="pair_key"):
        PreferencePair("", "actor", "p", "c", "r")
    with pytest.raises(ValueError, match="chosen"):
        PreferencePair("k", "actor", "p", None, "r")  # type: ignore[arg-type]


def test_training_modules_import_no_heavy_library() -> None:
    loaded = modules_after(
        "import mrtui.backends.training, mrtui.backends.trl_dpo, mrtui.backends.hf_models"
    )
    assert not loaded & {"torch", "transformers", "trl", "peft", "datasets", "accelerate"}


def test_trl_log_keys_map_to_step_metrics() -> None:
    pytest.importorskip("trl")
    from mrtui.backends.trl_dpo import preference_row, step_metrics

    logs = {
        "loss": 0.69,
        "grad_norm": 1.5,
        "learning_rate": 5e-5,
        "rewards/chosen": 0.1,
        "rewards/rejected": -0.2,
        "rewards/accuracies": 1.0,
        "rewards/margins": 0.3,
        "logps/chosen": -10.0,
        "epoch": 0.25,
        "note": "not a number",
    }
    m = step_metrics(3, logs)
    assert (m.step, m.epoch, m.loss, m.learning_rate) == (3, 0.25, 0.69, 5e-5)
    assert (m.rewards_chosen, m.rewards_rejected) == (0.1, -0.2)
    assert (m.reward_accuracy, m.reward_margin) == (1.0, 0.3)
    assert m.extra == {"grad_norm": 1.5, "logps/chosen": -10.0}
    assert step_metrics(1, {"loss": 1.0}).rewards_chosen is None

    row = preference_row(PreferencePair("k", "actor", "Q", "good", "bad", system="Be brief."))
    assert row["prompt"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q"},
    ]
    assert row["chosen"] == [{"role": "assistant", "content": "good"}]
    assert row["rejected"] == [{"role": "assistant", "content": "bad"}]


# --- GGUF → HF ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hf(tiny_dequantised: Path) -> Path:
    """The tiny GGUF's converted folder (converted once per session, see conftest)."""
    pytest.importorskip(
        "trl", reason="DPO training needs the train extra: pip install mrtui[train]"
    )
    return tiny_dequantised


@pytest.fixture(scope="module")
def hf_cache(tiny_hf: Path) -> Path:
    """The cache folder the conversion went to, holding nothing else."""
    return tiny_hf.parent


def _state(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


class _Converted(Exception):
    """Raised by the conversion spy: the GGUF was about to be converted."""


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Identity of a folder and of each of its files: (inode, size, mtime in ns)."""
    entries = [folder, *sorted(folder.iterdir())]
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in entries}


def test_gguf_becomes_a_cached_hf_folder(
    tiny_gguf: Path, tiny_hf: Path, hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mrtui.backends import hf_models
    from mrtui.backends.gguf_io import TinyQwen2Config, tiny_qwen2_weights
    from mrtui.backends.hf_models import materialize_hf, source_of
    from mrtui.backends.models import file_sha256

    assert tiny_hf.parent == hf_cache and tiny_hf.name == file_sha256(tiny_gguf)
    assert [p.name for p in hf_cache.iterdir()] == [tiny_hf.name]  # no temporary folder left

    # A cache hit converts nothing and leaves the cached folder as it was.
    conversions: list[Path] = []

    def spy(gguf_path: Path, target: Path) -> None:
        conversions.append(target)
        raise _Converted(gguf_path)

    monkeypatch.setattr(hf_models, "_convert_gguf", spy)
    source = (tiny_hf / hf_models.SOURCE_FILE).read_bytes()
    before = _snapshot(tiny_hf)
    assert materialize_hf(tiny_gguf, cache_dir=hf_cache) == tiny_hf
    assert conversions == []
    assert _snapshot(tiny_hf) == before
    assert (tiny_hf / hf_models.SOURCE_FILE).read_bytes() == source  # not written again
    assert [p.name for p in hf_cache.iterdir()] == [tiny_hf.name]
    # The spy sits on the path a miss takes: another cache converts (and keeps nothing).
    with pytest.raises(_Converted):
        materialize_hf(tiny_gguf, cache_dir=tmp_path / "cold")
    assert len(conversions) == 1 and conversions[0].parent == tmp_path / "cold"
    assert list((tmp_path / "cold").iterdir()) == []
    monkeypatch.undo()

    assert source_of(tiny_hf)["gguf_sha256"] == tiny_hf.name  # type: ignore[index]
    assert "quantization_config" not in json.loads((tiny_hf / "config.json").read_text())

    # The weights are the ones the GGUF was written from (stored there as f16).
    state = _state(tiny_hf)
    vocab = state["model.embed_tokens.weight"].shape[0]
    for name, want in tiny_qwen2_weights(TinyQwen2Config(vocab_size=vocab)).items():
        np.testing.assert_allclose(state[name].numpy(), want, atol=2e-3, err_msg=name)

    # Plain transformers loads it; the tokenizer renders chats as llama.cpp does (ChatML).
    model = AutoModelForCausalLM.from_pretrained(tiny_hf)
    assert model.config.num_hidden_layers == 2 and not getattr(model, "is_quantized", False)
    tok = AutoTokenizer.from_pretrained(tiny_hf)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user\nhi<|im_end|>" in text


def test_model_references_other_than_gguf(tiny_hf: Path, tmp_path: Path, monkeypatch) -> None:
    from mrtui.backends.hf_models import materialize_hf

    assert materialize_hf(tiny_hf) == tiny_hf  # an HF folder is used as it is
    with pytest.raises(BackendError, match="not found"):
        materialize_hf(tmp_path / "missing.gguf")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BackendError, match="neither an HF model folder nor a GGUF"):
        materialize_hf(tmp_path / "notes.txt")
    with pytest.raises(BackendError, match=r"no config\.json"):
        materialize_hf(tmp_path)
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    with pytest.raises(BackendError, match="when offline"):
        materialize_hf("hf:Qwen/Qwen2.5-0.5B-Instruct")


# --- DPO ---------------------------------------------------------------------------------


def _train(base: Path, out: Path, **settings: object) -> tuple[TrainResult, list[StepMetrics]]:
    from mrtui.backends.trl_dpo import TRLDPOBackend

    backend = TRLDPOBackend()
    assert isinstance(backend, TrainingBackend)
    steps: list[StepMetrics] = []
    s = DPOSettings(beta=BETA, batch_size=2, max_steps=2, **settings)  # type: ignore[arg-type]
    return backend.train(base, PAIRS, out, s, steps.append), steps


@pytest.fixture(scope="module")
def lora_run(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("lora") / "model"
    return _train(tiny_hf, out, lora=True, learning_rate=1e-3)


@pytest.fixture(scope="module")
def full_run(tiny_hf: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("full") / "model"
    return _train(tiny_hf, out, lora=False, learning_rate=1e-4)


def _check_metrics(steps: list[StepMetrics]) -> None:
    assert [m.step for m in steps] == [1, 2]
    first, second = steps
    # Before the first update the policy is the reference model: every reward is 0.
    assert first.rewards_chosen == 0.0 and first.rewards_rejected == 0.0
    assert first.loss == pytest.approx(math.log(2), abs=1e-5)
    for m in steps:
        assert None not in (m.loss, m.reward_accuracy, m.reward_margin, m.learning_rate)
        assert {"grad_norm", "logps/chosen", "logps/rejected"} <= set(m.extra)
        assert m.epoch > 0
    # After it, rewards move away from the reference and the margin is their difference.
    assert second.rewards_chosen != 0.0 or second.rewards_rejected != 0.0
    assert second.reward_margin == pytest.approx(
        second.rewards_chosen - second.rewards_rejected, abs=1e-5
    )


def _check_folder(result: TrainResult, base: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mrtui.backends.hf_models import weights_sha256

    out = result.model_dir
    assert out.is_dir() and not list(out.parent.glob(".*partial"))
    assert not (out / "adapter_config.json").exists() and not (out / "trainer").exists()
    assert result.weights_sha256 == weights_sha256(out) != weights_sha256(base)
    assert result.steps == 2 and result.wall_s > 0
    assert result.final["pairs"] == result.final["pairs_trained"] == len(PAIRS)
    assert result.final["versions"]["trl"]
    model = AutoModelForCausalLM.from_pretrained(out)  # no peft involved
    assert model.dtype.is_floating_point and str(model.dtype) == "torch.float32"
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    info = json.loads((out / "mrtui-train.json").read_text())
    assert info["base_model"] == str(base) and info["settings"]["beta"] == BETA


def test_lora_dpo_trains_merges_and_reports(tiny_hf: Path, lora_run) -> None:
    result, steps = lora_run
    _check_metrics(steps)
    _check_folder(result, tiny_hf)
    before, after = _state(tiny_hf), _state(result.model_dir)
    assert set(before) == set(after)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not after[q].equal(before[q])  # the adapter, merged in
    for untouched in ("model.embed_tokens.weight", "model.norm.weight"):
        assert after[untouched].equal(before[untouched])


def test_full_dpo_trains_every_weight_against_a_frozen_reference(tiny_hf: Path, full_run) -> None:
    result, steps = full_run
    _check_metrics(steps)
    _check_folder(result, tiny_hf)
    before, after = _state(tiny_hf), _state(result.model_dir)
    for name in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight"):
        assert not after[name].equal(before[name])


def test_bad_requests_fail_before_any_training(tiny_hf: Path, tmp_path: Path) -> None:
    from mrtui.backends.trl_dpo import TRLDPOBackend

    backend, s = TRLDPOBackend(), DPOSettings()
    with pytest.raises(TrainingError, match="no preference pairs"):
        backend.train(tiny_hf, [], tmp_path / "a", s)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(TrainingError, match="not empty"):
        backend.train(tiny_hf, PAIRS, tmp_path / "b", s)
    with pytest.raises(BackendError, match=r"no config\.json"):
        backend.train(tmp_path, PAIRS, tmp_path / "c", s)


def test_a_run_that_fails_writes_nothing(tiny_hf: Path, tmp_path: Path) -> None:
    from mrtui.backends.trl_dpo import TRLDPOBackend

    out = tmp_path / "model"
    with pytest.raises(TrainingError, match="raise max_length"):  # every prompt is too long
        TRLDPOBackend().train(tiny_hf, PAIRS[:2], out, DPOSettings(max_length=8))
    assert list(tmp_path.iterdir()) == []


def test_weights_from_a_launch_are_checked_before_they_are_written(tiny_hf: Path) -> None:
    """What a sharded launch gave back becomes a checkpoint only if every weight has the
    shape of the base model's (ZeRO-3 once gave back a 0-row embedding)."""
    import torch
    from transformers import AutoModelForCausalLM

    from mrtui.backends.training import TrainingError
    from mrtui.backends.trl_dpo import _check_whole

    model = AutoModelForCausalLM.from_pretrained(tiny_hf, dtype=torch.float32)
    _check_whole(model, tiny_hf)
    model.model.embed_tokens.weight = torch.nn.Parameter(torch.empty(0, 64))
    with pytest.raises(TrainingError, match=r"incomplete weights: model\.embed_tokens\.weight"):
        _check_whole(model, tiny_hf)
    model = AutoModelForCausalLM.from_pretrained(tiny_hf, dtype=torch.float32)
    model.model.norm.weight = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(TrainingError, match=r"model\.norm\.weight \(3,\)"):
        _check_whole(model, tiny_hf)
