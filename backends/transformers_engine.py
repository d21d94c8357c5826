"""Batched decoding and choice scoring on a transformers causal LM, by hand.

The transformers backend (:mod:`.transformers_backend`) hands this engine batches of work of two
kinds, and gets plain data back:

- :class:`DecodeSpec`: generate from a prompt. A batch is left-padded (every row's last prompt
  token in the same column), the prompts are evaluated in one pass and then one token per step
  is decoded for every row still running, with a KV cache. Finished rows leave the cache, so a
  batch costs what its running rows cost. Each row samples with its own ``torch.Generator``
  seeded with the row's seed: temperature first, then top_p (vLLM's order), from one uniform
  draw per token (inverse CDF), so a row's text depends on its seed and prompt, not on the
  rows beside it (up to float rounding between batch shapes). Temperature 0 is greedy.
- :class:`ScoreSpec`: the teacher-forced log-probability of each of several continuations
  (choices) given a prompt. The prompts are evaluated once, their cache rows repeated once per
  choice, and the choices' tokens fed in one more pass.

A row may carry a :class:`RationaleRule`, which keeps a :class:`~mrtui.backends.base.FinalLine`
rationale on one line (and free of digits when asked) by masking tokens. torch is passed in
(the backend imports it lazily), so importing this module costs nothing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import FinalLine
from .constrain import fit_rationale

# Logit bins that find a top_p nucleus without sorting the vocabulary: _BINS of them over the
# _LOGIT_SPAN below the top logit (tokens further down, e^-40 as likely, share the lowest bin).
_BINS = 4096
_LOGIT_SPAN = 40.0
_TOP_K = 512  # a top_p nucleus within this many top tokens is drawn from them alone
_DIGIT = re.compile("[0-9]")


@dataclass(frozen=True)
class DecodeSpec:
    """One generation: up to ``max_tokens`` tokens after ``prompt``."""

    prompt: tuple[int, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: tuple[str, ...] = ()
    rule: RationaleRule | None = None


@dataclass(frozen=True)
class DecodeOut:
    text: str = ""
    tokens: int = 0  # tokens generated (an end-of-sequence token not counted)
    finish_reason: str = "length"
    error: str | None = None


@dataclass(frozen=True)
class ScoreSpec:
    """Score each choice (its token ids) as the continuation of ``prompt``; with ``logits``,
    return the logits after ``prompt`` too (for :mod:`.choice_probs`)."""

    prompt: tuple[int, ...]
    choices: tuple[tuple[int, ...], ...]
    logits: bool = False


@dataclass(frozen=True)
class ScoreOut:
    logprobs: tuple[float, ...] = ()
    error: str | None = None
    logits: Any = None  # with ScoreSpec.logits: a float32 numpy array over the vocabulary


class TokenTable:
    """What each token id's text holds, for masking: built once per tokenizer (~2 s for a
    150k vocabulary). ``line_breaking`` marks tokens a one-line rationale cannot take (a line
    break, a special or empty token, an id the tokenizer does not know)."""

    def __init__(self, torch: Any, tokenizer: Any, vocab_size: int, device: Any) -> None:
        known = min(len(tokenizer), vocab_size)
        texts = tokenizer.batch_decode(
            [[i] for i in range(known)],
            skip_special_tokens=False,
            clean_up_tokenization_spaces=False,
        )
        special = set(tokenizer.all_special_ids or ())
        special |= {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        texts += [""] * (vocab_size - known)
        breaking = [not t or "\n" in t or "\r" in t or i in special for i, t in enumerate(texts)]
        first = [t[:1].isascii() and (t[:1].isupper() or t[:1].isdigit()) for t in texts]

        def tensor(flags: list[bool]) -> Any:
            return torch.tensor(flags, dtype=torch.bool, device=device)

        self.texts: list[str] = texts
        self.line_breaking = tensor(breaking)
        self.digit = tensor([bool(_DIGIT.search(t)) for t in texts])
        self.sentence_start = tensor(first)


@dataclass
class RationaleRule:
    """Keeps a generated rationale on one line: tokens with a line break (or special ones) are
    refused, and digits with ``forbid_digits``; the first token must start with a capital
    letter or a digit. When the model itself picks a refused token that would end the line
    (a line break, the end of its turn) and its text up to there ends a sentence within the
    bounds, the rationale ends there; otherwise the token is drawn again from the allowed
    ones. The row also ends when the model starts writing the final line itself (the lead's
    first word and a colon, "Score:") or once its text reaches ``max_chars``; the caller cuts
    the text to its last sentence end (:func:`.constrain.fit_rationale`) or closes it."""

    spec: FinalLine
    table: TokenTable
    text: str = ""
    _refused: dict[bool, Any] = field(default_factory=dict)

    @property
    def marker(self) -> str | None:
        """Where the model starts its own final line ("Score:" for the lead "Score: ")."""
        word = (self.spec.lead.split() or [""])[0].rstrip(":")
        return f"{word}:" if word else None

    def refused(self, first: bool) -> Any:
        """The bool mask of tokens refused at this step."""
        if first not in self._refused:
            t = self.table
            mask = t.line_breaking | t.digit if self.spec.forbid_digits else t.line_breaking
            self._refused[first] = mask | ~t.sentence_start if first else mask
        return self._refused[first]

    def ending(self, token: int) -> str | None:
        """The whole rationale if the model's own ``token`` (a refused one) ends it here: its
        text before a line break completes a sentence within the bounds."""
        if not self.text or not bool(self.table.line_breaking[token]):
            return None
        line = (self.text + re.split("[\r\n]", self.table.texts[token])[0]).rstrip()
        return line if fit_rationale(self.spec, line) == line else None

    @property
    def full(self) -> bool:
        return len(self.text) >= self.spec.max_chars


def close_rationale(spec: FinalLine, text: str) -> str:
    """A generated rationale (``text``, one line) as the format takes it: cut at its last
    sentence end within the bounds, or else cut to ``max_chars - 1`` characters (padded with
    dots up to ``min_chars - 1``) and closed with a full stop."""
    line = text.strip()
    fit = fit_rationale(spec, line)
    if fit is not None:
        return fit
    return line[: spec.max_chars - 1].rstrip().ljust(spec.min_chars - 1, ".") + "."


def cache_keyword(model: Any) -> str:
    """The forward keyword of the KV cache: ``cache`` (transformers >= 5.2x) or
    ``past_key_values`` (older releases)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _takes(model: Any, keyword: str) -> bool:
    return keyword in inspect.signature(model.forward).parameters


def sample_rows(
    torch: Any,
    logits: Any,
    temperatures: Sequence[float],
    top_ps: Sequence[float],
    generators: Sequence[Any],
) -> list[int]:
    """One token per row of ``logits`` ([rows, vocab]): greedy at temperature 0, else
    softmax(logits / temperature) cut to the top_p nucleus, drawn by inverse CDF (summed in
    float64) in token id order with one uniform number from the row's generator (a CPU
    ``torch.Generator``). The nucleus is every token at least as likely as its least likely
    member, and the draw walks token ids, not a sorted order: near-ties that swap places
    between batch shapes (float rounding) change nothing, so a seed gives the same text in any
    batch unless a probability moves across the draw itself. A nucleus within the top
    ``_TOP_K`` tokens (a peaked distribution) is drawn from them alone."""
    picks: list[int] = logits.argmax(-1).tolist()
    rows = [r for r, t in enumerate(temperatures) if t > 0]
    if not rows:
        return picks
    f64, device = torch.float64, logits.device
    index = torch.tensor(rows, device=device)
    temps = torch.tensor([temperatures[r] for r in rows], device=device)
    scaled = logits[index].float() / temps[:, None]
    top_p = torch.tensor([top_ps[r] for r in rows], dtype=f64, device=device)[:, None]
    draws = [torch.rand((), generator=generators[r], dtype=f64) for r in rows]
    u = torch.stack(draws).to(device)[:, None]
    top, ids = scaled.topk(min(_TOP_K, scaled.shape[-1]), -1)
    probs = (top - torch.logsumexp(scaled, -1, keepdim=True)).double().exp()
    inside = (probs.cumsum(-1) - probs) < top_p
    floor = probs.gather(-1, inside.sum(-1, keepdim=True).clamp(min=1) - 1)
    fast = ((top_p < 1) & (probs[:, -1:] < floor))[:, 0].tolist()
    by_id = ids.argsort(-1)
    chosen = _inverse_cdf(torch, (probs * (probs >= floor)).gather(-1, by_id), u)
    chosen = ids.gather(-1, by_id.gather(-1, chosen)).tolist()
    slow = [i for i, f in enumerate(fast) if not f]
    if slow:  # a flat distribution, or top_p 1: the whole vocabulary
        at = torch.tensor(slow, device=device)
        full = torch.softmax(scaled[at], -1).double()
        if bool((top_p[at] < 1).any()):
            full = full * (full >= _nucleus_floors(torch, scaled[at], full, top_p[at]))
        for i, token in zip(slow, _inverse_cdf(torch, full, u[at]).tolist(), strict=True):
            chosen[i] = token
    for r, token in zip(rows, chosen, strict=True):
        picks[r] = int(token[0])
    return picks


def _inverse_cdf(torch: Any, weights: Any, u: Any) -> Any:
    """Per row, the index where ``u`` (in [0, 1)) of the row's total weight is reached
    ([rows, 1]); a zero-weight index (a draw rounded past the end) becomes the heaviest."""
    cum = weights.cumsum(-1)
    j = torch.searchsorted(cum, cum[:, -1:] * u, right=True).clamp_(max=cum.shape[-1] - 1)
    return torch.where(weights.gather(-1, j) > 0, j, weights.argmax(-1, keepdim=True))


def _nucleus_floors(torch: Any, scaled: Any, probs: Any, top_p: Any) -> Any:
    """Per row, the probability of the least likely token of the top_p nucleus (the smallest
    set of most likely tokens whose mass reaches top_p; top_p and the result are [rows, 1]),
    without sorting the vocabulary: tokens are binned by logit, the bin where the mass from
    the top reaches top_p is found, and only that bin's tokens are sorted."""
    n = scaled.shape[0]
    hi = scaled.max(-1, keepdim=True).values
    step = (_BINS - 1) / _LOGIT_SPAN  # everything below hi - _LOGIT_SPAN goes to bin 0
    idx = ((scaled - hi) * step + (_BINS - 1)).clamp_(min=0).long()
    flat = (idx + torch.arange(n, device=idx.device)[:, None] * _BINS).view(-1)
    mass = torch.zeros(n * _BINS, dtype=probs.dtype, device=probs.device)
    mass = mass.index_add_(0, flat, probs.reshape(-1)).view(n, _BINS)
    from_top = mass.flip(-1).cumsum(-1)
    j = torch.searchsorted(from_top, top_p).clamp_(max=_BINS - 1)
    above = from_top.gather(-1, j) - mass.gather(-1, (_BINS - 1) - j)  # [rows, 1]
    members = idx == (_BINS - 1) - j  # the tokens of each row's crossing bin
    counts = members.sum(-1, keepdim=True)
    # members first, most likely first (a probability is >= 0 > -1)
    ranked = torch.where(members, probs, -1.0).topk(int(counts.max()), -1).values
    listed = torch.arange(ranked.shape[-1], device=ranked.device) < counts
    inside = ((above + ranked.cumsum(-1) - ranked) < top_p) & listed
    return ranked.gather(-1, inside.sum(-1, keepdim=True).clamp_(min=1) - 1)


class Engine:
    """Runs :class:`DecodeSpec` and :class:`ScoreSpec` batches on ``model``."""

    def __init__(
        self,
        torch: Any,
        model: Any,
        tokenizer: Any,
        max_model_len: int,
        *,
        eos_ids: set[int] | None = None,
    ) -> None:
        """``eos_ids`` end a generation (default: the generation config's and the
        tokenizer's end-of-sequence tokens)."""
        self.torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.eos_ids = eos_ids if eos_ids is not None else _eos_ids(model, tokenizer)
        pads = (tokenizer.pad_token_id, tokenizer.eos_token_id, 0)
        self.pad_id: int = next(p for p in pads if isinstance(p, int))
        self.max_model_len = max_model_len
        self._cache_kw = cache_keyword(model)
        self._slices = _takes(model, "logits_to_keep")  # else all logits come back

    def text(self, ids: Sequence[int]) -> str:
        return str(
            self.tokenizer.decode(
                list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        )

    def _forward(self, ids: Any, mask: Any, pos: Any, cache: Any, keep: int) -> tuple[Any, Any]:
        """Logits of the last ``keep`` positions (0: all) and the cache after the pass."""
        kwargs: dict[str, Any] = {self._cache_kw: cache}
        if self._slices:
            kwargs["logits_to_keep"] = keep
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs
        )
        new = getattr(out, "cache", None)
        logits = out.logits if self._slices or keep == 0 else out.logits[:, -keep:]
        return logits, new if new is not None else out.past_key_values

    def _prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[Any, Any, Any, Any]:
        """Left-padded prompts through the model: last logits, cache, mask, next positions."""
        torch = self.torch
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, mask, pos, None, 1)
        return logits[:, -1, :].float(), cache, mask, pos[:, -1] + 1

    # --- generation ------------------------------------------------------------------------

    def decode(self, specs: Sequence[DecodeSpec]) -> list[DecodeOut]:
        """Generate every spec as one batch (see the module docstring)."""
        torch = self.torch
        with torch.inference_mode():
            logits, cache, mask, pos = self._prefill([s.prompt for s in specs])
            gens = [torch.Generator().manual_seed(s.seed & 0xFFFF_FFFF_FFFF_FFFF) for s in specs]
            out: list[DecodeOut | None] = [None] * len(specs)
            made: list[list[int]] = [[] for _ in specs]
            rows = list(range(len(specs)))  # the spec of each cache row
            for s in specs:
                if s.rule is not None:
                    s.rule.text = ""  # a retried spec starts over
            while True:
                picks = sample_rows(
                    torch,
                    logits,
                    [specs[i].temperature for i in rows],
                    [specs[i].top_p for i in rows],
                    [gens[i] for i in rows],
                )
                keep: list[int] = []
                for r, i in enumerate(rows):
                    done = self._step(specs[i], made[i], picks[r], logits[r], gens[i])
                    if done is None:
                        keep.append(r)
                    else:
                        out[i] = done
                if not keep:
                    break
                if len(keep) < len(rows):
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    mask, pos = mask[index], pos[index]
                rows = [rows[r] for r in keep]
                last = torch.tensor([[made[i][-1]] for i in rows], device=self.device)
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                step_logits, cache = self._forward(last, mask, pos[:, None], cache, 1)
                logits, pos = step_logits[:, -1, :].float(), pos + 1
        return [o if o is not None else DecodeOut(error="no output") for o in out]

    def _step(
        self, spec: DecodeSpec, made: list[int], token: int, logits: Any, gen: Any
    ) -> DecodeOut | None:
        """Take ``token`` for a row (or refuse it, under a rule); its output if it is done."""
        rule = spec.rule
        if rule is not None:
            refused = rule.refused(not made)
            if bool(refused[token]):
                ending = rule.ending(token) if made else None
                if ending is not None:
                    return DecodeOut(ending, len(made) + 1, "stop")
                masked = logits.masked_fill(refused, float("-inf"))[None]
                (token,) = sample_rows(self.torch, masked, [spec.temperature], [spec.top_p], [gen])
        elif token in self.eos_ids:
            return DecodeOut(self.text(made), len(made), "stop")
        made.append(token)
        text = self.text(made) if spec.stop or rule is not None else None
        if text is not None and spec.stop:
            cuts = [c for c in (text.find(s) for s in spec.stop if s) if c >= 0]
            if cuts:
                return DecodeOut(text[: min(cuts)], len(made), "stop")
        if rule is not None and text is not None:
            rule.text = text
            marker = rule.marker
            if marker is not None and marker in text:
                return DecodeOut(text[: text.index(marker)], len(made), "stop")
            if rule.full:
                return DecodeOut(text, len(made), "stop")
        if len(made) >= spec.max_tokens or len(spec.prompt) + len(made) >= self.max_model_len:
            return DecodeOut(text if text is not None else self.text(made), len(made), "length")
        return None

    # --- scoring ---------------------------------------------------------------------------

    def score(self, specs: Sequence[ScoreSpec]) -> list[ScoreOut]:
        """The log-probability of every choice of every spec, prompts evaluated once."""
        torch = self.torch
        with torch.inference_mode():
            logits, cache, mask, pos = self._prefill([s.prompt for s in specs])
            first = torch.log_softmax(logits, -1)
            rows = [(b, c) for b, s in enumerate(specs) for c in s.choices]
            totals = [float(first[b, c[0]]) for b, c in rows]
            width = max((len(c) for _, c in rows), default=1) - 1
            if width > 0:  # feed each choice but its last token; score the tokens after
                index = torch.tensor([b for b, _ in rows], device=self.device)
                cache.batch_select_indices(index)
                ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
                tail = torch.zeros((len(rows), width), dtype=torch.long)
                for r, (_, c) in enumerate(rows):
                    ids[r, : len(c) - 1] = torch.tensor(c[:-1], dtype=torch.long)
                    tail[r, : len(c) - 1] = 1
                full_mask = torch.cat([mask[index], tail.to(self.device)], dim=1)
                steps = pos[index][:, None] + torch.arange(width, device=self.device)
                out, _ = self._forward(ids.to(self.device), full_mask, steps, cache, 0)
                lp = torch.log_softmax(out.float(), -1)
                for r, (_, c) in enumerate(rows):
                    totals[r] += sum(float(lp[r, j, c[j + 1]]) for j in range(len(c) - 1))
        outs, at = [], 0
        for b, s in enumerate(specs):
            row = logits[b].cpu().numpy().copy() if s.logits else None
            outs.append(ScoreOut(tuple(totals[at : at + len(s.choices)]), logits=row))
            at += len(s.choices)
        return outs


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


def run_safely(run: Callable[[list[Any]], list[Any]], specs: list[Any], failed: Any) -> list[Any]:
    """``run(specs)`` as one batch; if the batch raises, each spec alone, so that only the
    specs that fail by themselves get ``failed(error)``."""
    try:
        return run(specs)
    except Exception as e:
        if len(specs) == 1:
            return [failed(f"{type(e).__name__}: {e}")]
    outs = []
    for spec in specs:
        try:
            (one,) = run([spec])
        except Exception as e:
            one = failed(f"{type(e).__name__}: {e}")
        outs.append(one)
    return outs
