"""Continuous batching on llama.cpp: many sequences decoded together, through llama-cpp-python's
bindings of llama.cpp's batch API and llama.cpp's own samplers.

llama.cpp decodes a batch of tokens from several sequences in one pass, and on a CPU a pass over
16 sequences costs little more than over one (docs/backends.md, "llama.cpp, batched": 63
tokens/s for one sequence, about 200 for 16 on Qwen 0.5B, 2 threads). The engine keeps up to
``parallel`` sequences in flight, each in its own slot (a llama.cpp sequence id), and admits
the next piece of work as soon as a slot frees, whatever request it belongs to: continuous
batching over a whole stage.

The KV cache is unified (``kv_unified``), so a sequence's cells can be shared: a new sequence
whose prompt starts like what some slot holds (its own last sequence, or another one, running or
finished) gets that prefix by ``llama_memory_seq_cp``, without evaluating it again; N judgements
of one response evaluate its prompt once. Finished slots keep their cells for that reuse until
the space is needed.

Each sequence has its own sampler chain (grammar, then top-k, top-p, temperature and a seeded
draw, or greedy at temperature 0), so its seed is its own; but a batch computes a sequence's
logits next to other sequences, in a different order than alone, so the same seed need not give
the same text as the sequential path (docs/running.md: what stays reproducible).
"""

from __future__ import annotations

import ctypes
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# Prompt tokens a new sequence would evaluate again rather than wait for a running sequence to
# finish decoding them (then they are copied): below this, waiting is not worth a pass.
_WORTH_WAITING = 16


@dataclass(frozen=True)
class Spec:
    """One generation: prompt tokens in, up to ``max_tokens`` out. With ``logits``, the
    logits where the first token is sampled (the prompt's end) come back too; with
    ``max_tokens`` 0 as well, the prompt is only evaluated (nothing is sampled)."""

    key: Any
    prompt: tuple[int, ...]
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF source
    logits: bool = False


@dataclass
class Out:
    """What a spec produced (or why it could not run)."""

    text: str = ""
    completion_tokens: int = 0
    finish_reason: str = "length"
    evaluated: int | None = None  # prompt tokens decoded (after prefix reuse)
    error: str | None = None
    logits: Any = None  # with Spec.logits: a float32 array over the vocabulary


@dataclass
class _Seq:
    spec: Spec
    slot: int
    pending: list[int]  # prompt tokens not decoded yet
    sampler: Any
    evaluated: int
    next_token: int | None = None  # sampled, not yet in the KV cache
    tokens: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    out: Out | None = None
    logits: Any = None


class BatchEngine:
    """Up to ``parallel`` sequences decoded together on one llama.cpp context."""

    def __init__(
        self,
        model: Any,
        *,
        n_ctx: int,
        n_batch: int,
        parallel: int,
        n_threads: int,
        seq_limit: int | None = None,
    ) -> None:
        """A context of ``n_ctx`` KV cells shared by ``parallel`` sequences, each of which
        ends ("length") when it reaches ``seq_limit`` positions (default ``n_ctx``)."""
        import llama_cpp as L

        self._L = L
        params = L.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = parallel
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        self._ctx = L.llama_init_from_model(model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a batch context")
        self._mem = L.llama_get_memory(self._ctx)
        self._vocab = L.llama_model_get_vocab(model)
        self._n_vocab = int(L.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = int(L.llama_n_ctx(self._ctx))
        self.seq_limit = min(seq_limit or self.n_ctx, self.n_ctx)
        self._n_batch = n_batch
        self._batch = L.llama_batch_init(n_batch, 0, 1)
        self.parallel = parallel
        self._cells: list[list[int]] = [[] for _ in range(parallel)]  # tokens each slot holds
        self._active: dict[int, _Seq] = {}
        self._queue: deque[Spec] = deque()
        self._piece = ctypes.create_string_buffer(256)

    # -- public ---------------------------------------------------------------------------
    def submit(self, spec: Spec, *, follow_up: bool = False) -> None:
        """Queue a spec; it is admitted when a slot and room in the KV cache are free.

        A ``follow_up`` continues a sequence that just finished (its prompt is that sequence's
        text and more): it goes first, so it finds the finished slot's cells still there
        instead of evaluating them again after other work took the slot."""
        if follow_up:
            self._queue.appendleft(spec)
        else:
            self._queue.append(spec)

    def run(self) -> Iterator[tuple[Spec, Out]]:
        """Decode until every submitted spec is done, yielding each as it finishes. Specs
        submitted while iterating (follow-ups) join the running batch."""
        while self._queue or self._active:
            yield from self._admit()
            if not self._active:
                continue
            yield from self._step()

    def reset(self) -> None:
        """Drop what is queued and running (a consumer that stopped early); finished slots
        keep their cells for prefix reuse."""
        self._queue.clear()
        for seq in list(self._active.values()):
            self._L.llama_sampler_free(seq.sampler)
            self._L.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
            self._cells[seq.slot] = []
        self._active.clear()

    def close(self) -> None:
        if self._ctx:
            for seq in self._active.values():
                self._L.llama_sampler_free(seq.sampler)
            self._active.clear()
            self._L.llama_batch_free(self._batch)
            self._L.llama_free(self._ctx)
            self._ctx = None

    # -- admission --------------------------------------------------------------------------
    def _used(self) -> int:
        return sum(len(c) for c in self._cells)

    def _admit(self) -> Iterator[tuple[Spec, Out]]:
        """Place queued specs in free slots, in order. A spec whose prompt a running sequence
        is still decoding waits for it (then copies it) while the specs behind it go ahead,
        up to ``parallel`` of them looked at past the first waiting one."""
        free = [s for s in range(self.parallel) if s not in self._active]
        waiting: list[Spec] = []
        while self._queue and free and len(waiting) <= self.parallel:
            spec = self._queue.popleft()
            if len(spec.prompt) >= self.seq_limit:
                yield spec, Out(error=f"prompt of {len(spec.prompt)} tokens does not fit n_ctx")
                continue
            slot, src, shared = self._best_slot(spec.prompt, free)
            if self._soon_shared(spec.prompt) > shared + _WORTH_WAITING:
                waiting.append(spec)  # copy the prompt once the running sequence has it
                continue
            need = len(spec.prompt) - shared + spec.max_tokens
            if not self._make_room(need, keep={slot, src} if shared else {slot}) and self._active:
                waiting.append(spec)  # wait for a running sequence to finish
                break
            try:
                sampler = self._sampler(spec)
            except ValueError as e:  # one bad grammar fails its spec, not the batch
                yield spec, Out(error=str(e))
                continue
            free.remove(slot)
            self._place(spec, slot, src, shared, sampler)
        self._queue.extendleft(reversed(waiting))

    def _best_slot(self, prompt: tuple[int, ...], free: list[int]) -> tuple[int, int, int]:
        """A free slot, the slot to copy the prompt's prefix from, and how many leading prompt
        tokens that reuses (at least one token is left to decode for logits). The slot is the
        prefix's own when that one is free, else the free slot holding the fewest cells, which
        keeps the others' cells for the sequences that may reuse them."""
        best_src, best = -1, 0
        for s, cells in enumerate(self._cells):
            n = common_prefix(cells, prompt)
            if n > best:
                best_src, best = s, n
        best = min(best, len(prompt) - 1)
        if best_src in free:
            return best_src, best_src, best
        slot = min(free, key=lambda s: len(self._cells[s]))
        return slot, (best_src if best else slot), best

    def _soon_shared(self, prompt: tuple[int, ...]) -> int:
        """The longest prefix of ``prompt`` that a running sequence is still decoding (its
        prompt is partly pending): worth waiting a pass or two for, rather than evaluating
        the same tokens twice (K samples of one prompt, N judgements of one response)."""
        best = 0
        for seq in self._active.values():
            if seq.pending:
                best = max(best, common_prefix(list(seq.spec.prompt), prompt))
        return min(best, len(prompt) - 1)

    def _make_room(self, need: int, *, keep: set[int]) -> bool:
        """Free cells of finished slots (not those in ``keep``) until ``need`` more cells fit;
        False if they cannot."""
        L = self._L
        for s in range(self.parallel):
            if self._used() + need <= self.n_ctx:
                return True
            if s in self._active or s in keep:
                continue
            L.llama_memory_seq_rm(self._mem, s, -1, -1)
            self._cells[s] = []
        return self._used() + need <= self.n_ctx

    def _place(self, spec: Spec, slot: int, src: int, shared: int, sampler: Any) -> None:
        L = self._L
        if src == slot:
            L.llama_memory_seq_rm(self._mem, slot, shared, -1)
            self._cells[slot] = self._cells[slot][:shared]
        else:
            L.llama_memory_seq_rm(self._mem, slot, -1, -1)
            if shared:
                L.llama_memory_seq_cp(self._mem, src, slot, 0, shared)
            self._cells[slot] = list(spec.prompt[:shared])
        pending = list(spec.prompt[shared:])
        self._active[slot] = _Seq(spec, slot, pending, sampler, len(pending))

    def _sampler(self, spec: Spec) -> Any:
        L = self._L
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if spec.grammar is not None:
            grammar = L.llama_sampler_init_grammar(self._vocab, spec.grammar.encode(), b"root")
            if not grammar:
                L.llama_sampler_free(chain)
                raise ValueError("llama.cpp could not parse the grammar")
            L.llama_sampler_chain_add(chain, grammar)
        if spec.temperature <= 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        else:
            if spec.top_k > 0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(spec.top_k))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(spec.top_p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(spec.temperature))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(spec.seed & 0xFFFFFFFF))
        return chain

    # -- one decode pass ------------------------------------------------------------------
    def _step(self) -> Iterator[tuple[Spec, Out]]:
        L, b = self._L, self._batch
        n = 0
        outputs: list[tuple[_Seq, int]] = []
        sampled: list[tuple[_Seq, int]] = []  # sequences whose sampled token this pass decodes
        chunks: list[tuple[_Seq, int]] = []  # and how many pending prompt tokens of which
        # sampled tokens first (one each), then prompt chunks in the room left
        for seq in self._active.values():
            if seq.next_token is not None and n < self._n_batch:
                self._add(n, seq.next_token, seq.slot, True)
                outputs.append((seq, n))
                sampled.append((seq, seq.next_token))
                n += 1
        for seq in self._active.values():
            if not seq.pending or n >= self._n_batch:
                continue
            take = min(len(seq.pending), self._n_batch - n)
            for i in range(take):
                last = i == take - 1 and take == len(seq.pending)
                self._add(n, seq.pending[i], seq.slot, last, offset=i)
                if last:
                    outputs.append((seq, n))
                n += 1
            chunks.append((seq, take))
        b.n_tokens = n
        ret = L.llama_decode(self._ctx, b)
        if ret != 0:
            yield from self._fail_all(f"llama_decode returned {ret}")
            return
        # the batch is in the KV cache now
        for seq, token in sampled:
            self._cells[seq.slot].append(token)
            seq.next_token = None
        for seq, take in chunks:
            self._cells[seq.slot] += seq.pending[:take]
            del seq.pending[:take]
        for seq, idx in outputs:
            yield from self._sample(seq, idx)

    def _add(self, i: int, token: int, slot: int, logits: bool, offset: int = 0) -> None:
        b = self._batch
        b.token[i] = token
        b.pos[i] = len(self._cells[slot]) + offset
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = slot
        b.logits[i] = logits

    def _sample(self, seq: _Seq, idx: int) -> Iterator[tuple[Spec, Out]]:
        L = self._L
        if seq.pending:  # a prompt chunk without its last token: nothing to sample yet
            return
        spec = seq.spec
        if spec.logits and seq.logits is None:
            seq.logits = self._logits(idx)
            if spec.max_tokens == 0:
                yield self._finish(seq, "length")
                return
        token = int(L.llama_sampler_sample(seq.sampler, self._ctx, idx))
        if L.llama_vocab_is_eog(self._vocab, token):
            yield self._finish(seq, "stop")
            return
        seq.tokens.append(token)
        piece = self._bytes(token)
        seq.data += piece
        cut = _stop_at(seq.data, len(piece), spec.stop) if spec.stop else None
        if cut is not None:
            yield self._finish(seq, "stop", seq.data[:cut].decode("utf-8", errors="ignore"))
            return
        if len(seq.tokens) >= spec.max_tokens or len(self._cells[seq.slot]) + 1 >= self.seq_limit:
            yield self._finish(seq, "length")
            return
        seq.next_token = token

    def _finish(self, seq: _Seq, reason: str, text: str | None = None) -> tuple[Spec, Out]:
        self._L.llama_sampler_free(seq.sampler)
        del self._active[seq.slot]
        if text is None:
            text = seq.data.decode("utf-8", errors="ignore")
        return seq.spec, Out(text, len(seq.tokens), reason, seq.evaluated, logits=seq.logits)

    def _logits(self, idx: int) -> Any:
        """A copy of the logits the last pass computed for batch entry ``idx``."""
        return logits_row(self._L, self._ctx, idx, self._n_vocab)

    def _fail_all(self, error: str) -> Iterator[tuple[Spec, Out]]:
        """A failed pass: every running sequence fails; the slots' cells are dropped."""
        for seq in list(self._active.values()):
            self._L.llama_sampler_free(seq.sampler)
            del self._active[seq.slot]
            yield seq.spec, Out(error=error)
        self._L.llama_memory_clear(self._mem, True)
        self._cells = [[] for _ in range(self.parallel)]

    def _bytes(self, token: int) -> bytes:
        return token_bytes(self._L, self._vocab, token, self._piece)


def token_bytes(L: Any, vocab: Any, token: int, buf: Any) -> bytes:
    """The text of ``token`` as llama.cpp writes it (special tokens as nothing), through the
    reusable buffer ``buf``."""
    n = L.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    if n < 0:
        buf = ctypes.create_string_buffer(-n)
        n = L.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return bytes(buf.raw[:n])


def vocab_pieces(model: Any) -> list[str]:
    """Every token's text (``pieces[i]`` is token i's), as :mod:`.choice_probs` matches it; a
    token that is part of a UTF-8 character gets a replacement character, so it cannot pass
    for a choice."""
    import llama_cpp as L

    vocab = L.llama_model_get_vocab(model)
    buf = ctypes.create_string_buffer(256)
    return [
        token_bytes(L, vocab, i, buf).decode("utf-8", errors="replace")
        for i in range(L.llama_vocab_n_tokens(vocab))
    ]


def logits_row(L: Any, ctx: Any, idx: int, n_vocab: int) -> Any:
    """A float32 copy of the logits llama.cpp's context ``ctx`` holds for output ``idx`` of its
    last decode (-1: the last one)."""
    import numpy as np

    row = L.llama_get_logits_ith(ctx, idx)
    if not row:
        raise RuntimeError(f"llama.cpp has no logits for output {idx}")
    return np.ctypeslib.as_array(row, shape=(n_vocab,)).copy()


def _stop_at(data: bytearray, new: int, stops: tuple[str, ...]) -> int | None:
    """Where the earliest stop string that the last ``new`` bytes of ``data`` completed begins,
    or None. Only those bytes can complete one (every earlier token was checked), so only the
    tail is searched: the text is not decoded and scanned again for every token."""
    found = []
    for stop in stops:
        b = stop.encode()
        if b:
            i = data.find(b, max(0, len(data) - new - len(b) + 1))
            if i >= 0:
                found.append(i)
    return min(found) if found else None


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
