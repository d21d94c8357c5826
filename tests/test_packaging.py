"""A built wheel (non-editable install) carries its assets, views and migrations, and the
README's commands are the ones CI and the tests run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]

PROBE = """
import importlib.util, json, mrtui, mrtui.store.db as c
from mrtui.loop.prompts import load_template
from importlib import resources
print(json.dumps({
    "mrtui": mrtui.__file__,
    "judge": load_template("judge").sha256,
    "views": [n for n, _ in c.view_sql()],
    "migrations": [n for _, n, _ in c.migrations()],
    "demo": resources.files("mrtui.assets").joinpath("presets", "demo.toml").is_file(),
    "paper": resources.files("mrtui.assets").joinpath("presets", "paper.toml").is_file(),
    "prompts": resources.files("mrtui.assets").joinpath("prompts", "demo.jsonl").is_file(),
    "tui": importlib.util.find_spec("mrtui.tui.app").origin,
}))
"""


def test_wheel_install_loads_assets_from_the_installed_package(tmp_path: Path) -> None:
    import json

    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("mrtui-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        check=True,
    )
    info = json.loads(out.stdout)
    assert info["mrtui"].startswith(str(site))
    assert len(info["judge"]) == 64 and info["demo"] and info["paper"] and info["prompts"]
    files = [p.name for p in (ROOT / "store" / "views").glob("*.sql")]
    assert info["views"] == sorted([*files, "70_health.sql"])  # the health views are generated
    assert info["migrations"] == sorted(p.name for p in (ROOT / "store/migrations").glob("*.sql"))
    assert info["tui"].startswith(str(site))  # the TUI package is in the wheel


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^    (python3 -m venv \.venv && .*)$", text, flags=re.M)


def test_readme_has_exactly_the_two_setup_commands() -> None:
    demo, tests = _readme_commands()
    assert demo.endswith(".venv/bin/mrtui demo")
    assert tests.endswith(".venv/bin/pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "README.md" in ci and "pytest" in ci


# The README's main job itself runs in tests/cli/test_end_to_end.py
# (test_the_demo_on_the_packaged_qwen), where its log also serves the read commands' checks.
