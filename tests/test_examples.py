"""The example scripts run end to end (``--quick``: tiny sizes) and write their figure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# name -> whether its --quick run takes more than ~10 s on a shared 2-core machine
FIGURE_EXAMPLES = {
    "fubini_study_and_ball": True,
    "geodesics_on_decoder": True,
    "surrogate_vs_fisher": False,
    "training_with_regulariser": False,
    "volume_sampling": False,
}


def _run(args, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if slow else [])
        for name, slow in FIGURE_EXAMPLES.items()
    ],
)
def test_example_quick(name, tmp_path):
    out = tmp_path / f"{name}.png"
    r = _run([str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.is_file() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classical_geometries_runs(tmp_path):
    r = _run([str(EXAMPLES / "classical_geometries.py")], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PSH: True" in r.stdout


def test_every_example_is_tested():
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(FIGURE_EXAMPLES) | {"classical_geometries"}
