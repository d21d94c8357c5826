"""Which modules a piece of code loads, run in a fresh interpreter (the import-cost tests)."""

from __future__ import annotations

import json
import subprocess
import sys


def modules_after(code: str) -> set[str]:
    """Every module in ``sys.modules`` after ``code`` ran in a new Python process (a package's
    parents are there too: ``torch`` whenever ``torch.nn`` is)."""
    probe = f"{code}\nimport sys as _sys, json as _json\nprint(_json.dumps(sorted(_sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))
