"""Running the real ``mrtui`` entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def mrtui(
    *args: str | Path,
    input: str | None = None,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mrtui", *map(str, args)],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
