"""Each experiment script still starts against today's library (imports resolve, options parse)."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = sorted((REPO / "experiments").glob("*.py")) + sorted((REPO / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", [s for s in SCRIPTS if not s.name.startswith("_")], ids=lambda s: s.name)
def test_script_starts(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_shell_recipes_parse():
    for script in sorted(REPO.glob("*/*.sh")):
        if script.parent.name in ("experiments", "scripts"):
            done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
            assert done.returncode == 0, (script, done.stderr)
