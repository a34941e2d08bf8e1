"""Smoke test of the benchmark scripts: they run, check their methods agree, and print a table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, out: Path, *args: str) -> str:
    """Run ``benchmarks/<script> --quick --out <out> [args]``; check it succeeded and wrote its
    stdout to ``out``; return the stdout."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text(encoding="utf-8").strip() == proc.stdout.strip()
    return proc.stdout


@pytest.mark.slow
def test_bench_ddbar_quick(tmp_path):
    stdout = run_quick("bench_ddbar.py", tmp_path / "ddbar.md", "--device", "cpu")
    lines = stdout.splitlines()
    header = [line for line in lines if line.startswith("| potential")]
    assert len(header) == 1, stdout
    rows = [line for line in lines if line.startswith("| fubini-study")]
    assert rows, stdout
    # Every row has the 15 columns of the table, with the ratio columns filled in.
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 15, row
        assert cells[7].rstrip("*").endswith("×"), row
        assert cells[8].endswith("×") and cells[9].endswith("×"), row
    assert "extrapolated" in stdout  # --quick exercises the subset-and-extrapolate path
    assert "peak memory:" in stdout


@pytest.mark.slow
def test_bench_curvature_quick(tmp_path):
    stdout = run_quick("bench_curvature.py", tmp_path / "curvature.md")
    rows = [line for line in stdout.splitlines() if line.startswith("| ")][2:]
    assert {row.split("|")[1].strip() for row in rows} == {"christoffel", "ricci", "riemann"}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 10 and cells[7].endswith("×"), row
