"""Shared helpers for the benchmarks: timing, machine description, RESULTS.md sections."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "RESULTS.md"

HEADER = """# mrtui benchmarks

Targets are listed in [docs/architecture.md](../docs/architecture.md#performance-targets).
Every number that is compared with a target is a **ratio against a baseline measured in the
same run** (or an absolute time where the target is one), and the **median of several
repeats**: the benchmark machine is small and shared, so absolute
timings move by ±20% or more from run to run. The summary is written by hand; every other
section is rewritten by the script named in it (rerun the command to refresh it).
"""


def demo_prompts(count: int | None = None) -> list[str]:
    """The shipped demo prompts (the first ``count``), read as ``mrtui run --prompts`` reads
    them."""
    from mrtui.loop.data import load_prompts

    rows = load_prompts(REPO / "assets" / "prompts" / "demo.jsonl")
    return [r.text for r in rows][:count]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, TypeError):
        pass
    return (
        f"nproc={nproc}, CPU: {cpu}{mem}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def load() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews absolute timings."""
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


def today() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def command() -> str:
    args = " ".join(sys.argv[1:])
    script = Path(sys.argv[0]).resolve()
    try:
        script_s = str(script.relative_to(REPO))
    except ValueError:
        script_s = str(script)
    return f".venv/bin/python {script_s}" + (f" {args}" if args else "")


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable as plain text on a terminal)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def update_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else HEADER
    block = f"{begin}\n{body.strip()}\n{end}"
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        _, post = rest.split(end, 1)
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def rss_mib() -> float:
    """Resident set size of this process now, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_iteration(runner: Any, iteration: int, settings: Any, model: Any) -> None:
    """``Runner.start_iteration``: log the iteration's start as a run does (the benchmarks
    that import this helper keep working)."""
    runner.start_iteration(iteration, settings, model)
