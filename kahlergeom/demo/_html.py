"""A self-contained HTML page from the demo's Markdown report (figures embedded as data URIs).

Only the Markdown the report writes is understood: ``#``-headings, paragraphs, ``-`` lists,
``> `` quotes, pipe tables, images ``![alt](path)``, ``**bold**``, ``*italic*`` and
`` `code` ``. Every other character is HTML-escaped, so the page shows exactly the report.
"""

from __future__ import annotations

import base64
import html
import os
import re

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;"
    "padding:.25rem .5rem;text-align:left}img{max-width:100%}blockquote{border-left:4px solid"
    " #ccc;margin:0;padding-left:1rem;color:#444}code{background:#f4f4f4;padding:0 .2rem}"
)


def _inline(text: str, base: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])", r"<em>\1</em>", out)

    def image(m: re.Match) -> str:
        alt, src = m.group(1), m.group(2)
        path = os.path.join(base, html.unescape(src))
        if not os.path.isfile(path):
            return f"<em>[missing figure {src}]</em>"
        with open(path, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
        return f'<img alt="{alt}" src="data:image/png;base64,{data}">'

    return re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", image, out)


def markdown_to_html(markdown: str, base: str, title: str = "kahlergeom report") -> str:
    """Render the report's Markdown as one HTML page; images are read relative to ``base``."""
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"(#{1,6}) (.*)", line):
            level = len(m.group(1))
            body.append(f"<h{level}>{_inline(m.group(2), base)}</h{level}>")
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            head, *rest = rows
            out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c, base)}</th>" for c in head)]
            out += ["<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in r) for r in rest]
            body.append("\n".join(out) + "\n</table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:], base)}</li>")
                i += 1
            body.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif line.startswith("> "):
            quoted = []
            while i < len(lines) and lines[i].startswith("> "):
                quoted.append(_inline(lines[i][2:], base))
                i += 1
            body.append("<blockquote>" + " ".join(quoted) + "</blockquote>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"(#|\||- |> )", lines[i]):
                para.append(_inline(lines[i], base))
                i += 1
            body.append("<p>" + " ".join(para) + "</p>")
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
