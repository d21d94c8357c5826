"""Run mrtui and kill -9 it at an exact point of its log: right after the N-th event of a type
(optionally with a payload field equal to a value) is written to disk.

    python tests/killpoint.py EVENT_TYPE N [FIELD=VALUE] -- <mrtui arguments>

The kill tests used to watch the log from outside and send SIGKILL when a count was reached;
under load the process ran on between the observation and the signal, so the kill could land
after the stage it meant to hit. Here the process kills itself: ``EventLog.append`` is wrapped
so that, once the N-th matching event is buffered, the log is flushed (the event is durable,
as it would be at any later moment of a real run) and the process sends itself SIGKILL. No
cleanup runs, no writer lock is released, nothing else is flushed: a real kill -9."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
from typing import Any


def _arm(event_type: str, count: int, where: tuple[str, str] | None) -> None:
    from mrtui.store.log import EventLog

    original = EventLog.append
    seen = 0

    def append(self: EventLog, events: Iterable[Any]) -> None:
        nonlocal seen
        batch = list(events)
        original(self, batch)
        for e in batch:
            if e.event_type != event_type:
                continue
            if where is not None and str(e.payload.get(where[0])) != where[1]:
                continue
            seen += 1
        if seen >= count:
            self.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    EventLog.append = append  # type: ignore[method-assign]


def main(argv: list[str]) -> None:
    split = argv.index("--")
    spec, args = argv[:split], argv[split + 1 :]
    event_type, count = spec[0], int(spec[1])
    where = tuple(spec[2].split("=", 1)) if len(spec) > 2 else None
    _arm(event_type, count, where)  # type: ignore[arg-type]
    sys.argv = ["mrtui", *args]
    from mrtui.cli import main as mrtui_main

    mrtui_main()


if __name__ == "__main__":
    main(sys.argv[1:])
