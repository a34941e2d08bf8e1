"""The runnable templates of docs/extending.md execute and their own assertions hold.

The blocks run in order in one module namespace, as a reader would paste them into one file.
"""

from __future__ import annotations

import pathlib
import re
import sys
import types

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "extending.md"


def test_extending_snippets_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    module = types.ModuleType("docs_extending")
    sys.modules[module.__name__] = module  # dataclasses resolve annotations through it
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"{DOC.name}[block {i}]", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
