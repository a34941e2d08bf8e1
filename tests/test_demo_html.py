"""The demo's HTML report: structure, escaping and embedded figures."""

import base64
import re

from kahlergeom.demo._html import markdown_to_html

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_structure_and_embedded_figure(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(PNG)
    md = "\n".join(
        [
            "# Title <x>",
            "",
            "> smoother representations",
            "",
            "| q | a |",
            "|---|---|",
            "| **b** | `c` |",
            "",
            "- one *two*",
            "- three",
            "",
            "![fig](figures/a.png)",
            "![gone](figures/none.png)",
        ]
    )
    page = markdown_to_html(md, str(tmp_path))
    assert "<h1>Title &lt;x&gt;</h1>" in page
    assert "<blockquote>smoother representations</blockquote>" in page
    assert (
        "<th>q</th><th>a</th>" in page
        and "<td><strong>b</strong></td><td><code>c</code></td>" in page
    )
    assert page.count("<li>") == 2 and "<em>two</em>" in page
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(data) == PNG
    assert "[missing figure figures/none.png]" in page
    assert "figures/a.png" not in page.split("<body>")[1].replace("missing figure", "")
