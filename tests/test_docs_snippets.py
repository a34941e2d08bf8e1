"""Every documentation page's Python blocks run, in order, in one namespace per page.

A reader pastes a page's blocks one after another into one session; so does this test, for
every ``docs/**/*.md`` page that has ```` ```python ```` blocks (new pages are picked up
automatically). Each page runs in a fresh module namespace (registered in ``sys.modules`` so
that dataclasses resolve annotations) with a temporary working directory, so files a snippet
writes land there. The assertions and printed values in the blocks are the oracle: a block
that raises fails the test with the page, block number and line.

Markers (HTML comments, invisible in the rendered page):

* ``<!-- docs-test: skip -->`` on the line just before a fence: that block is not run (for
  code that needs ``torchrun``, a GPU or a file the reader must supply);
* ``<!-- docs-test: slow -->`` anywhere in a page: the page's test is marked ``slow``.
"""

from __future__ import annotations

import pathlib
import re
import sys
import traceback
import types

import pytest
import torch

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", flags=re.S | re.M)
SKIP = "<!-- docs-test: skip -->"
SLOW = "<!-- docs-test: slow -->"


def page_blocks(path: pathlib.Path) -> list[tuple[int, str]]:
    """The runnable Python blocks of a page: (first line number, code), in page order."""
    text = path.read_text()
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == SKIP:
            continue
        blocks.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return blocks


def _pages():
    params = []
    for path in sorted(DOCS.rglob("*.md")):
        if not FENCE.search(path.read_text()):
            continue
        marks = [pytest.mark.slow] if SLOW in path.read_text() else []
        params.append(pytest.param(path, id=str(path.relative_to(DOCS)), marks=marks))
    return params


def test_runner_finds_the_pages():
    ids = {p.id for p in _pages()}
    assert {"getting-started.md", "extending.md", "distributed.md", "symbolic.md"} <= ids
    assert len(page_blocks(DOCS / "extending.md")) >= 4


@pytest.mark.parametrize("path", _pages())
def test_page_blocks_run_in_order(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    name = "docs_" + re.sub(r"\W", "_", str(path.relative_to(DOCS)))
    module = types.ModuleType(name)
    sys.modules[name] = module
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    try:
        for i, (line, code) in enumerate(page_blocks(path)):
            label = f"{path.relative_to(DOCS)}[block {i}, line {line}]"
            try:
                exec(compile(code, label, "exec"), module.__dict__)
            except Exception:
                pytest.fail(f"{label} failed:\n{traceback.format_exc(limit=-3)}")
    finally:
        del sys.modules[name]
        # Snippets may import geomstats (which switches the default dtype) or set threads.
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
