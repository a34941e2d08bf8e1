"""The API reference pages carry an up-to-date plain-Markdown summary of their names.

Oracle: regenerating the tables with ``tools/api_summary.py`` gives the committed pages
(run ``./dev api`` after adding or renaming a public name or changing a first docstring line).
"""

from __future__ import annotations

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("api_summary", ROOT / "tools" / "api_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_pages_have_current_summaries():
    tool = _tool()
    stale = [p.name for p in sorted(tool.API.glob("*.md")) if tool.render(p) != p.read_text()]
    assert not stale, f"API summary tables out of date in {stale}: run ./dev api"


def test_every_api_page_has_a_summary_table():
    tool = _tool()
    for page in sorted(tool.API.glob("*.md")):
        text = page.read_text()
        assert tool.START in text and tool.END in text, page.name
        assert text.count("\n| `") >= 1, page.name
