"""The data layer loads without front-end or heavy libraries (the CLI imports it lazily)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_datasets_modules_import_only_the_standard_library() -> None:
    probe = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import mrtui.datasets.clean, mrtui.datasets.evalsets, mrtui.datasets.overlap\n"
        "import mrtui.datasets.sources\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout)) - {"mrtui"}
    assert loaded <= set(sys.stdlib_module_names), loaded - set(sys.stdlib_module_names)
