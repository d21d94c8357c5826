"""A deterministic in-process backend for fast tests of loop logic (never behind the demo).

It answers like a tiny model would: actor requests get texts of varying length, judge requests
end with a "Score: N" line derived from a hash (some deliberately unparseable), meta requests
end with a winner line. ``fail_ids`` makes chosen requests fail; ``crash_after`` raises after
that many results, to simulate a process dying mid-stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrtui.backends.base import BackendInfo, Completion, Failure, Request, Result


def _h(*parts: object) -> int:
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:8], 16)


class FakeBackend:
    def __init__(
        self,
        *,
        sha256: str = "f" * 64,
        unparseable_every: int = 0,
        fail_ids: Iterable[str] = (),
        crash_after: int | None = None,
    ) -> None:
        self.sha256 = sha256
        self.unparseable_every = unparseable_every
        self.fail_ids = set(fail_ids)
        self.crash_after = crash_after
        self.calls: list[Request] = []
        self.closed = False

    def info(self) -> BackendInfo:
        return BackendInfo("fake", "0", "fake-model", None, self.sha256, None)

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for req in requests:
            if self.crash_after is not None and len(self.calls) >= self.crash_after:
                raise KeyboardInterrupt("simulated crash")
            self.calls.append(req)
            if req.id in self.fail_ids:
                yield Failure(req.id, "simulated failure", 0.001)
                continue
            yield Completion(
                req.id, 0, self._answer(req), "stop", 10, 5, 10, req.params.seed, 0.001
            )

    def _answer(self, req: Request) -> str:
        content = req.messages[-1].content
        h = _h(content, req.params.seed)
        if req.choices:
            return req.choices[h % len(req.choices)]
        if "[Judgment A]" in content:
            return (
                f"Judgment {'AB'[h % 2]} reads the response better.\nWinner: Judgment {'AB'[h % 2]}"
            )
        if "[Response]" in content:
            if self.unparseable_every and h % self.unparseable_every == 0:
                return "I think this is decent."
            return f"Earns some points.\nScore: {h % 6}"
        return "answer " + "word " * (h % 40)

    def close(self) -> None:
        self.closed = True


@dataclass
class TrainResultStub:
    """What a trainer returns (``mrtui.backends.training.TrainResult``'s fields), for fake
    trainers in loop tests."""

    model_dir: Path
    weights_sha256: str
    steps: int
    wall_s: float
    final: dict[str, Any]


@dataclass
class ExportStub:
    """What ``export_gguf`` returns, for fake exporters in loop tests."""

    path: Path
    sha256: str
    outtype: str
    wall_s: float = 0.01
