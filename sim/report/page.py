"""The document model the reports share: blocks (headings, paragraphs, tables, figures,
code) rendered to Markdown with linked PNGs, or to one self-contained HTML page with the
PNGs inline."""
from __future__ import annotations

import base64
import html
import io
import re

#: resolution of the reports' figures (dots per inch)
DPI = 110


def png(fig, dpi: int = DPI, metadata: dict | None = None) -> bytes:
    """A matplotlib Figure as PNG bytes (``metadata`` as for ``savefig``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata=metadata)
    return buf.getvalue()


# ======================================================================== document
class Doc:
    """Blocks rendered to Markdown and HTML: (kind, payload)."""

    def __init__(self):
        self.blocks = []

    def h(self, level, text, anchor=None):
        self.blocks.append(("h", (level, text, anchor)))

    def p(self, text):
        self.blocks.append(("p", text))

    def headline(self, text):
        self.blocks.append(("headline", text))

    def ul(self, items):
        self.blocks.append(("ul", [i for i in items if i]))

    def table(self, header, rows, note=None):
        self.blocks.append(("table", (header, [r for r in rows if r], note)))

    def fig(self, name, title, caption):
        self.blocks.append(("fig", (name, title, caption)))

    def code(self, text):
        self.blocks.append(("code", text))


def md_cell(s):
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_md(doc: Doc, fig_paths: dict) -> str:
    out = []
    for kind, x in doc.blocks:
        if kind == "h":
            out.append("#" * x[0] + " " + x[1])
        elif kind == "p":
            out.append(x)
        elif kind == "headline":
            out.append("> **" + x + "**")
        elif kind == "ul":
            out.append("\n".join(f"- {i}" for i in x))
        elif kind == "table":
            header, rows, note = x
            t = ["| " + " | ".join(md_cell(h) for h in header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
            t += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(t))
            if note:
                out.append(f"*{note}*")
        elif kind == "fig":
            name, title, caption = x
            if name in fig_paths:
                out.append(f"![{title}]({fig_paths[name]})")
            out.append(f"*{caption}*")
        elif kind == "code":
            out.append("```\n" + x.rstrip("\n") + "\n```")
    return "\n\n".join(out) + "\n"


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:60rem;margin:2rem auto;
padding:0 1.2rem;color:#1d2433;line-height:1.5;background:#fff}
h1{font-size:1.7rem;margin-bottom:.3rem}h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:1px solid #dde;
padding-bottom:.2rem}h3{font-size:1.08rem;margin-top:1.6rem}
.headline{background:#fdf3e7;border-left:5px solid #d9822b;padding:.8rem 1rem;font-size:1.08rem;
font-weight:600;margin:1rem 0}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem;width:100%}
th,td{border:1px solid #d7dbe3;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f7}tr:nth-child(even) td{background:#fafbfc}
td.num{text-align:right;white-space:nowrap}
figure{margin:1rem 0 1.6rem}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.95rem;color:#333;margin-top:.4rem}
.note{font-size:.85rem;color:#555}
pre{background:#f5f6f8;padding:.7rem;overflow-x:auto;font-size:.82rem;border:1px solid #e3e5ea}
nav ul{columns:2;font-size:.92rem}
"""

NUMERIC = re.compile(r"^[\s\d.,%–\-−+±n/a]+$")


def render_html(doc: Doc, pngs: dict, title: str) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(title)}</title><style>{CSS}</style></head><body>"]
    toc = [(x[2], x[1]) for k, x in doc.blocks if k == "h" and x[0] == 2 and x[2]]
    toc_done = False
    for kind, x in doc.blocks:
        if kind == "h":
            level, text, anchor = x
            if level == 2 and not toc_done and toc:
                out.append("<nav><strong>Contents</strong><ul>" + "".join(
                    f'<li><a href="#{e(a)}">{e(t)}</a></li>' for a, t in toc) + "</ul></nav>")
                toc_done = True
            aid = f' id="{e(anchor)}"' if anchor else ""
            out.append(f"<h{level}{aid}>{e(text)}</h{level}>")
        elif kind == "p":
            out.append(f"<p>{e(x)}</p>")
        elif kind == "headline":
            out.append(f'<div class="headline">{e(x)}</div>')
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in x) + "</ul>")
        elif kind == "table":
            header, rows, note = x
            t = ["<table><thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr></thead><tbody>"]
            for r in rows:
                cells = []
                for j, c in enumerate(r):
                    cls = ' class="num"' if j > 0 and NUMERIC.match(str(c)) else ""
                    cells.append(f"<td{cls}>{e(str(c))}</td>")
                t.append("<tr>" + "".join(cells) + "</tr>")
            t.append("</tbody></table>")
            out.append("".join(t))
            if note:
                out.append(f'<p class="note">{e(note)}</p>')
        elif kind == "fig":
            name, title_, caption = x
            img = ""
            if name in pngs:
                b64 = base64.b64encode(pngs[name]).decode("ascii")
                img = f'<img src="data:image/png;base64,{b64}" alt="{e(title_)}">'
            out.append(f"<figure>{img}<figcaption>{e(caption)}</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre>{e(x)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


