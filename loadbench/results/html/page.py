"""The HTML shell: one file with its styles inline, no script, nothing fetched, fit to print.

A page is a title, a line of facts and a list of sections; a section holds HTML fragments (tables,
paragraphs) and charts. Charts are inline SVG, so the page draws without JavaScript, opens from
disk, and prints as vectors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from loadbench.results.html.svg import Chart, fmt_number

CSS = """
:root{--ink:#222;--muted:#666;--line:#ddd;--bg:#fafafa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans','Liberation Sans',Arial,sans-serif;
color:var(--ink);background:#fff}
main{max-width:1200px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14px;margin:16px 0 6px}
p.sub{color:var(--muted);margin:0 0 14px}
p.note{color:var(--muted);font-size:12.5px;margin:4px 0 10px}
nav{font-size:13px;margin:6px 0 10px}
nav a{margin-right:12px;color:#0b5cad;text-decoration:none}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:130px;background:var(--bg)}
.card b{display:block;font-size:19px}
.card span{color:var(--muted);font-size:12px}
.card.bad b{color:#b3261e}
.tw{max-width:100%;overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0 12px}
th,td{padding:3px 9px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f3f3f3;font-weight:600}
td.l,th.l{text-align:left}
td.wrap{white-space:normal;text-align:left;max-width:760px}
tr.bad td{color:#b3261e}
td.better{color:#1a7f37}
td.worse{color:#b3261e}
.grid{display:flex;flex-wrap:wrap;gap:12px 16px}
figure{margin:0;break-inside:avoid;page-break-inside:avoid}
figure svg{display:block;max-width:100%;height:auto;border:1px solid #eee}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13px;margin:6px 0 10px}
.facts dt{color:var(--muted)}
.facts dd{margin:0;word-break:break-word}
footer{color:var(--muted);font-size:12px;margin-top:30px;border-top:1px solid var(--line);padding-top:8px}
@media print{
 main{max-width:none;padding:0}
 body{font-size:11px}
 nav{display:none}
 h2{break-after:avoid;page-break-after:avoid}
 figure svg{border:none;width:100%;height:auto}
 .grid figure{width:calc(50% - 8px)}
 .card{padding:4px 8px;min-width:100px}
 .card b{font-size:14px}
 .tw{overflow:visible}
 table{break-inside:auto;font-size:9.5px}
 th,td{white-space:normal;padding:2px 5px}
 tr{break-inside:avoid}
 @page{size:A4 landscape;margin:12mm}
}
"""


@dataclass
class Section:
    """A titled part of the page: HTML fragments and charts, in order."""

    title: str
    anchor: str
    parts: list[str | Chart | list[Chart]] = field(default_factory=list)

    def html(self, text: str) -> None:
        self.parts.append(text)

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{escape(text)}</p>')

    def chart(self, chart: Chart) -> None:
        self.parts.append(chart)

    def grid(self, charts: Sequence[Chart]) -> None:
        self.parts.append(list(charts))

    def charts(self) -> list[Chart]:
        out: list[Chart] = []
        for p in self.parts:
            if isinstance(p, Chart):
                out.append(p)
            elif isinstance(p, list):
                out.extend(p)
        return out


@dataclass
class Page:
    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    generator: str = ""

    def section(self, title: str, anchor: str) -> Section:
        s = Section(title, anchor)
        self.sections.append(s)
        return s

    def charts(self) -> list[Chart]:
        return [c for s in self.sections for c in s.charts()]

    def render(self) -> str:
        nav = " ".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in self.sections)
        body: list[str] = [f"<h1>{escape(self.title)}</h1>"]
        if self.subtitle:
            body.append(f'<p class="sub">{escape(self.subtitle)}</p>')
        body.append(f"<nav>{nav}</nav>")
        for s in self.sections:
            body.append(f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>')
            for p in s.parts:
                if isinstance(p, Chart):
                    body.append(_figure(p))
                elif isinstance(p, list):
                    body.append('<div class="grid">' + "".join(_figure(c) for c in p) + "</div>")
                else:
                    body.append(p)
            body.append("</section>")
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        body.append(f"<footer>{escape(self.generator)} · written {stamp} · one self-contained file: "
                    "no scripts, no fonts or images fetched</footer>")
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            # No request may leave the page, even if a future edit adds a stray URL.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{escape(self.title)}</title><style>{CSS}</style></head>"
            f"<body><main>{''.join(body)}</main></body></html>\n"
        )


def _figure(chart: Chart) -> str:
    return f'<figure id="fig-{escape(chart.slug)}">{chart.svg()}</figure>'


def cards(items: Iterable[tuple[str, str, bool]]) -> str:
    """Headline figures: (value, caption, is_bad)."""
    out = []
    for value, caption, bad in items:
        cls = "card bad" if bad else "card"
        out.append(f'<div class="{cls}"><b>{escape(value)}</b><span>{escape(caption)}</span></div>')
    return '<div class="cards">' + "".join(out) + "</div>"


def table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, left: int = 1, row_classes: Sequence[str] | None = None,
    cell_classes: Sequence[Sequence[str]] | None = None,
) -> str:
    """An HTML table; the first ``left`` columns are left-aligned; numbers are formatted."""
    head = "".join(f'<th class="l">{escape(h)}</th>' if i < left else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = []
        for i, v in enumerate(row):
            extra = cell_classes[r][i] if cell_classes and i < len(cell_classes[r]) else ""
            classes = " ".join(c for c in ("l" if i < left else "", extra) if c)
            attr = f' class="{classes}"' if classes else ""
            cells.append(f"<td{attr}>{escape(cell(v))}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f'<div class="tw"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "-" if math.isnan(v) else fmt_number(v)
    return str(v)


def facts(items: Iterable[tuple[str, Any]]) -> str:
    out = []
    for k, v in items:
        if v is None or v == "":
            continue
        out.append(f"<dt>{escape(k)}</dt><dd>{escape(cell(v))}</dd>")
    return '<dl class="facts">' + "".join(out) + "</dl>"
