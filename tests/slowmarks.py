"""tests/slow_tests.txt: the tests `pytest -m "not slow"` leaves out by measured time.

The inner loop (`pytest -m "not slow"`) should take under three minutes on the 2-core machine.
Tests that load a real model are marked slow by their fixtures (tests/conftest.py); the rest
are marked by this list (conftest reads it with :func:`read_list`): every test whose setup,
call and teardown took at least THRESHOLD seconds together in a measured run. Measure and
rewrite the list with

    .venv/bin/pytest -m "not slow" -p no:cacheprovider --durations=0 -q > /tmp/durations.log
    .venv/bin/python tests/slowmarks.py /tmp/durations.log

Entries already listed stay (a test that got faster is taken out by hand, with its time);
ids that no longer name a test are reported by the test suite (tests/test_slow_list.py).
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

THRESHOLD = 1.0  # seconds
LIST = Path(__file__).resolve().with_name("slow_tests.txt")
LINE = re.compile(r"^(\d+(?:\.\d+)?)s (?:setup|call|teardown)\s+(\S.*?)\s*$")
HEADER = """\
# Tests marked slow by measured time (tests/conftest.py reads this; tests/slowmarks.py writes it).
# One pytest node id a line; `#` starts a comment. Threshold: {threshold} s on the 2-core machine.
"""


def read_list(path: Path = LIST) -> set[str]:
    """The node ids the list names."""
    if not path.exists():
        return set()
    ids = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {i for i in ids if i}


def durations(log: Path) -> dict[str, float]:
    """Seconds per node id (setup + call + teardown) in a `pytest --durations=0` output."""
    total: dict[str, float] = defaultdict(float)
    for line in log.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if m:
            total[m.group(2)] += float(m.group(1))
    return dict(total)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    measured = durations(Path(argv[0]))
    if not measured:
        print(f"{argv[0]} has no durations: run pytest with --durations=0", file=sys.stderr)
        return 1
    slow = read_list() | {k for k, v in measured.items() if v >= THRESHOLD}
    body = "".join(f"{k}\n" for k in sorted(slow))
    LIST.write_text(HEADER.format(threshold=THRESHOLD) + body)
    left = sum(v for k, v in measured.items() if k not in slow)
    print(f"{len(slow)} tests listed; the rest of that run took {left:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
