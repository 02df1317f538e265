"""A small SVG chart writer: axes, lines, points, bars, rectangles and legends as plain SVG text.

Why our own: a chart is a few kilobytes of markup that any browser draws with no script and
prints as vectors, the same text saved alone is a figure for a paper, and nothing is loaded from
anywhere. Every chart's size is bounded by what is drawn (points on a curve, bins, a sample of
requests), never by how many requests the run had.

Contracts: values that are NaN or None are skipped (a line breaks there); scales clamp nothing, so
callers pick domains that hold their data; all styling is in attributes, so the SVG renders the
same in a browser, in an image converter and on paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans','Liberation Sans',Arial,sans-serif"
# Okabe-Ito, reordered: distinguishable for colour-blind readers and in greyscale print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
INK = "#222"
GRID = "#e3e3e3"
AXIS = "#888"


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _f(v: float) -> str:
    """Coordinates to one decimal: enough for a screen, and it keeps files small."""
    r = round(v, 1)
    return str(int(r)) if r == int(r) else f"{r:.1f}"


def fmt_number(v: float | None, unit: str = "") -> str:
    """A short human number: 1.23, 12.3, 1,234; ``-`` for nothing."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    a = abs(v)
    if a >= 1e6:
        s = f"{v / 1e6:.3g}M"
    elif a >= 1000:
        s = f"{v:,.0f}"
    elif a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 1 or a == 0:
        s = f"{v:.2f}".rstrip("0").rstrip(".") if a != 0 else "0"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".rstrip() if unit else s


def _finite(v: float | None) -> bool:
    return v is not None and not (isinstance(v, float) and (math.isnan(v) or math.isinf(v)))


class Scale:
    """Maps data values to pixels; ``kind`` is ``linear``, ``log`` or ``nines``.

    ``nines`` is a percentile axis: x = -log10(1 - p/100), so p90, p99, p99.9 and p99.99 are
    evenly spaced and the tail gets the room it deserves.
    """

    def __init__(self, lo: float, hi: float, a: float, b: float, kind: str = "linear") -> None:
        self.kind = kind
        if kind == "log":
            lo = max(lo, 1e-9)
            hi = max(hi, lo * 10)
        if not hi > lo:
            hi = lo + (abs(lo) or 1.0)
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def _t(self, v: float) -> float:
        return math.log10(max(v, 1e-12)) if self.kind == "log" else v

    def __call__(self, v: float) -> float:
        lo, hi = self._t(self.lo), self._t(self.hi)
        return self.a + (self._t(v) - lo) / (hi - lo) * (self.b - self.a)

    def ticks(self, target: int = 6) -> list[tuple[float, str]]:
        if self.kind == "nines":
            marks = [(0.0, "p0"), (math.log10(2), "p50"), (1.0, "p90"), (2.0, "p99"), (3.0, "p99.9"),
                     (4.0, "p99.99"), (5.0, "p99.999")]
            return [(v, s) for v, s in marks if self.lo - 1e-9 <= v <= self.hi + 1e-9]
        if self.kind == "log":
            out = []
            e0, e1 = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            mults = (1, 2, 5) if e1 - e0 <= 3 else (1,)
            for e in range(e0, e1 + 1):
                for m in mults:
                    v = m * 10.0**e
                    if self.lo <= v <= self.hi:
                        out.append((v, f"{v:,.0f}" if v >= 1 else f"{v:g}"))
            return out
        step = nice_step((self.hi - self.lo) / max(target, 1))
        first = math.ceil(self.lo / step - 1e-9) * step
        out = []
        v = first
        i = 0
        while v <= self.hi + step * 1e-9:
            out.append((v, tick_label(0.0 if abs(v) < step * 1e-9 else v, step)))
            i += 1
            v = first + i * step
        return out


def tick_label(v: float, step: float) -> str:
    """A tick's text with just the decimals its step needs: 0, 50, 100; 0.25, 0.5; 1,500."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    if decimals == 0:
        return f"{v:,.0f}"
    return f"{v:.{min(decimals + 1, 6)}f}".rstrip("0").rstrip(".")


def nice_step(raw: float) -> float:
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    e = math.floor(math.log10(raw))
    base = raw / 10**e
    m = 1 if base <= 1 else 2 if base <= 2 else 5 if base <= 5 else 10
    return m * 10.0**e


def nice_max(v: float) -> float:
    """A round upper bound at or above ``v`` for a linear axis from zero."""
    if not v > 0:
        return 1.0
    step = nice_step(v / 5)
    return math.ceil(v / step - 1e-9) * step


def nines(p: float) -> float:
    """The nines-axis position of percentile ``p`` (0-100)."""
    return -math.log10(max(1e-12, 1 - p / 100))


@dataclass
class LegendItem:
    label: str
    color: str
    kind: str = "line"  # line | dash | box | dot
    dash: str = ""


class Chart:
    """One plot area with axes. Add marks, then ``svg()``; ``slug`` names the figure file."""

    def __init__(
        self,
        slug: str,
        title: str,
        *,
        width: int = 560,
        height: int = 300,
        x_label: str = "",
        y_label: str = "",
        note: str = "",
        left: int = 58,
        right: int = 16,
    ) -> None:
        self.slug = slug
        self.title = title
        self.width = width
        self.height = height
        self.x_label = x_label
        self.y_label = y_label
        self.note = note
        self.legend: list[LegendItem] = []
        self.left, self.right = left, right
        self.top = 30
        self._note_below = bool(note) and 6.8 * len(title) + 5.6 * len(note) + 30 > width - left - right
        if self._note_below:
            self.top += 13
        self.bottom = 44 if x_label else 30
        self.marks: list[str] = []
        self.annotations: list[str] = []  # drawn over the plot, not clipped to it (axis labels, notes)
        self.x: Scale | None = None
        self.y: Scale | None = None
        self._y_ticks: list[tuple[float, str]] | None = None
        self._x_ticks: list[tuple[float, str]] | None = None
        self.empty_text = ""

    # Plot area in pixels.
    @property
    def x0(self) -> float:
        return self.left

    @property
    def x1(self) -> float:
        return self.width - self.right

    @property
    def y0(self) -> float:
        return self.height - self.bottom

    @property
    def y1(self) -> float:
        return self.top + self._legend_height()

    def _legend_rows(self) -> list[list[LegendItem]]:
        rows: list[list[LegendItem]] = [[]]
        used = 0.0
        avail = self.x1 - self.x0
        for item in self.legend:
            w = 26 + 6.2 * len(item.label)
            if rows[-1] and used + w > avail:
                rows.append([])
                used = 0.0
            rows[-1].append(item)
            used += w
        return rows if self.legend else []

    def _legend_height(self) -> float:
        return 16.0 * len(self._legend_rows())

    def set_x(self, lo: float, hi: float, kind: str = "linear", ticks: list[tuple[float, str]] | None = None) -> Scale:
        self.x = Scale(lo, hi, self.x0, self.x1, kind)
        self._x_ticks = ticks
        return self.x

    def set_y(self, lo: float, hi: float, kind: str = "linear", ticks: list[tuple[float, str]] | None = None) -> Scale:
        self.y = Scale(lo, hi, self.y0, self.y1, kind)
        self._y_ticks = ticks
        return self.y

    def add_legend(self, label: str, color: str, kind: str = "line", dash: str = "") -> None:
        self.legend.append(LegendItem(label, color, kind, dash))

    # Marks. Coordinates are data values unless the name says px.
    def line(
        self, xs: Sequence[float], ys: Sequence[float], *, color: str, width: float = 1.8, dash: str = "",
        title: str = "", step: bool = False,
    ) -> None:
        assert self.x is not None and self.y is not None
        parts: list[str] = []
        pen_down = False
        prev_y = None
        for x, y in zip(xs, ys, strict=False):
            if not (_finite(x) and _finite(y)):
                pen_down = False
                continue
            px, py = self.x(x), self.y(y)
            if pen_down and step and prev_y is not None:
                parts.append(f"H{_f(px)}")
                parts.append(f"V{_f(py)}")
            else:
                parts.append(("L" if pen_down else "M") + f"{_f(px)},{_f(py)}")
            pen_down = True
            prev_y = py
        if not parts:
            return
        extra = f' stroke-dasharray="{dash}"' if dash else ""
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.marks.append(
            f'<path d="{"".join(parts)}" fill="none" stroke="{color}" stroke-width="{width}"'
            f' stroke-linejoin="round"{extra}>{tip}</path>'
        )

    def points(
        self, xs: Sequence[float], ys: Sequence[float], *, color: str, r: float = 3.0,
        titles: Sequence[str] | None = None, opacity: float = 1.0, hollow: bool = False,
    ) -> None:
        assert self.x is not None and self.y is not None
        op = f' fill-opacity="{opacity}"' if opacity < 1 else ""
        fill = f'fill="#fff" stroke="{color}" stroke-width="1.5"' if hollow else f'fill="{color}"'
        out = []
        for i, (x, y) in enumerate(zip(xs, ys, strict=False)):
            if not (_finite(x) and _finite(y)):
                continue
            tip = f"<title>{escape(titles[i])}</title>" if titles else ""
            out.append(f'<circle cx="{_f(self.x(x))}" cy="{_f(self.y(y))}" r="{r}" {fill}{op}>{tip}</circle>')
        self.marks.append("".join(out))

    def rect_px(self, x: float, y: float, w: float, h: float, *, fill: str, title: str = "", opacity: float = 1.0,
                stroke: str = "") -> None:
        if w <= 0 or h <= 0:
            return
        op = f' fill-opacity="{opacity}"' if opacity < 1 else ""
        st = f' stroke="{stroke}" stroke-width="0.8"' if stroke else ""
        tip = f"<title>{escape(title)}</title>" if title else ""
        self.marks.append(
            f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(max(w, 0.6))}" height="{_f(h)}" fill="{fill}"{op}{st}>'
            f"{tip}</rect>"
        )

    def bar(self, x_lo: float, x_hi: float, y_lo: float, y_hi: float, *, fill: str, title: str = "",
            opacity: float = 1.0, stroke: str = "") -> None:
        """A rectangle in data coordinates."""
        assert self.x is not None and self.y is not None
        px0, px1 = sorted((self.x(x_lo), self.x(x_hi)))
        py0, py1 = sorted((self.y(y_lo), self.y(y_hi)))
        self.rect_px(px0, py0, px1 - px0, py1 - py0, fill=fill, title=title, opacity=opacity, stroke=stroke)

    def band_x(self, x_lo: float, x_hi: float, *, fill: str = "#f2f2f2", label: str = "") -> None:
        """A full-height shaded band between two x values (e.g. warm-up)."""
        assert self.x is not None
        px0, px1 = sorted((self.x(x_lo), self.x(x_hi)))
        px0, px1 = max(px0, self.x0), min(px1, self.x1)
        if px1 <= px0:
            return
        self.marks.insert(0, f'<rect x="{_f(px0)}" y="{_f(self.y1)}" width="{_f(px1 - px0)}" '
                          f'height="{_f(self.y0 - self.y1)}" fill="{fill}"><title>{escape(label)}</title></rect>')
        if label:
            self.marks.append(self._text(px0 + 3, self.y1 + 11, label, size=9.5, fill="#777"))

    def hline(self, y: float, *, color: str, label: str = "", dash: str = "5 3") -> None:
        assert self.y is not None
        py = self.y(y)
        if not self.y1 - 0.5 <= py <= self.y0 + 0.5:
            return
        self.marks.append(f'<line x1="{_f(self.x0)}" x2="{_f(self.x1)}" y1="{_f(py)}" y2="{_f(py)}" '
                          f'stroke="{color}" stroke-width="1.3" stroke-dasharray="{dash}"/>')
        if label:
            self.marks.append(self._text(self.x1 - 4, py - 4, label, size=10, fill=color, anchor="end"))

    def vline(self, x: float, *, color: str, label: str = "", dash: str = "5 3", label_at: float = 0.0) -> None:
        """A vertical line; its label sits ``label_at`` of the way down the plot (0: at the top)."""
        assert self.x is not None
        px = self.x(x)
        if not self.x0 - 0.5 <= px <= self.x1 + 0.5:
            return
        self.marks.append(f'<line x1="{_f(px)}" x2="{_f(px)}" y1="{_f(self.y1)}" y2="{_f(self.y0)}" '
                          f'stroke="{color}" stroke-width="1.3" stroke-dasharray="{dash}"/>')
        if label:
            self.marks.append(self._text(px + 4, self.y1 + 12 + label_at * (self.y0 - self.y1 - 12), label, size=10,
                                         fill=color))

    def label(self, x: float, y: float, text: str, *, color: str = INK, dx: float = 5, dy: float = -5,
              size: float = 10, anchor: str = "start") -> None:
        assert self.x is not None and self.y is not None
        self.marks.append(self._text(self.x(x) + dx, self.y(y) + dy, text, size=size, fill=color, anchor=anchor))

    def text_px(self, x: float, y: float, text: str, **kw: object) -> None:
        """Text at pixel coordinates, outside the plot's clip (e.g. category labels under the axis)."""
        self.annotations.append(self._text(x, y, text, **kw))  # type: ignore[arg-type]

    @staticmethod
    def _text(x: float, y: float, text: str, *, size: float = 11, fill: str = INK, anchor: str = "start",
              weight: str = "", rotate: bool = False) -> str:
        w = f' font-weight="{weight}"' if weight else ""
        rot = f' transform="rotate(-90 {_f(x)} {_f(y)})"' if rotate else ""
        return (f'<text x="{_f(x)}" y="{_f(y)}" font-size="{size}" fill="{fill}" text-anchor="{anchor}"{w}{rot}>'
                f"{escape(text)}</text>")

    def _axes(self) -> str:
        out: list[str] = []
        if self.y is not None:
            for v, s in self._y_ticks if self._y_ticks is not None else self.y.ticks(5):
                py = self.y(v)
                if not self.y1 - 0.5 <= py <= self.y0 + 0.5:
                    continue
                out.append(f'<line x1="{_f(self.x0)}" x2="{_f(self.x1)}" y1="{_f(py)}" y2="{_f(py)}" '
                           f'stroke="{GRID}" stroke-width="1"/>')
                out.append(self._text(self.x0 - 5, py + 3.5, s, size=10, fill="#555", anchor="end"))
        if self.x is not None:
            for v, s in self._x_ticks if self._x_ticks is not None else self.x.ticks(6):
                px = self.x(v)
                if not self.x0 - 0.5 <= px <= self.x1 + 0.5:
                    continue
                out.append(f'<line x1="{_f(px)}" x2="{_f(px)}" y1="{_f(self.y1)}" y2="{_f(self.y0)}" '
                           f'stroke="{GRID}" stroke-width="1"/>')
                out.append(self._text(px, self.y0 + 14, s, size=10, fill="#555", anchor="middle"))
        out.append(f'<path d="M{_f(self.x0)},{_f(self.y1)}V{_f(self.y0)}H{_f(self.x1)}" fill="none" '
                   f'stroke="{AXIS}" stroke-width="1"/>')
        if self.x_label:
            out.append(self._text((self.x0 + self.x1) / 2, self.height - 8, self.x_label, size=10.5, fill="#444",
                                  anchor="middle"))
        if self.y_label:
            out.append(self._text(13, (self.y0 + self.y1) / 2, self.y_label, size=10.5, fill="#444",
                                  anchor="middle", rotate=True))
        return "".join(out)

    def _legend_svg(self) -> str:
        out: list[str] = []
        y = self.top + 8
        for row in self._legend_rows():
            x = self.x0
            for item in row:
                if item.kind in ("line", "dash"):
                    dash = f' stroke-dasharray="{item.dash or "5 3"}"' if item.kind == "dash" else ""
                    out.append(f'<line x1="{_f(x)}" x2="{_f(x + 18)}" y1="{_f(y - 3.5)}" y2="{_f(y - 3.5)}" '
                               f'stroke="{item.color}" stroke-width="2.2"{dash}/>')
                elif item.kind == "dot":
                    out.append(f'<circle cx="{_f(x + 9)}" cy="{_f(y - 3.5)}" r="3.5" fill="{item.color}"/>')
                else:
                    out.append(f'<rect x="{_f(x + 3)}" y="{_f(y - 9)}" width="12" height="11" fill="{item.color}"/>')
                out.append(self._text(x + 22, y, item.label, size=10.5, fill="#333"))
                x += 26 + 6.2 * len(item.label)
            y += 16
        return "".join(out)

    def svg(self) -> str:
        body: list[str] = [
            f'<rect width="{self.width}" height="{self.height}" fill="#fff"/>',
            self._text(self.x0, 17, self.title, size=12.5, weight="600"),
        ]
        if self.note and self._note_below:
            body.append(self._text(self.x0, 31, self.note, size=10, fill="#666"))
        elif self.note:
            body.append(self._text(self.x1, 17, self.note, size=10, fill="#666", anchor="end"))
        if self.x is None or self.y is None:
            body.append(self._text(self.width / 2, self.height / 2, self.empty_text or "no data", size=12,
                                   fill="#888", anchor="middle"))
        else:
            body.append(self._axes())
            body.append(f'<g clip-path="url(#c-{self.slug})">{"".join(self.marks)}</g>')
            body.append("".join(self.annotations))
            body.append(self._legend_svg())
        clip = (f'<defs><clipPath id="c-{self.slug}"><rect x="{_f(self.x0 - 4)}" y="{_f(self.y1 - 4)}" '
                f'width="{_f(self.x1 - self.x0 + 8)}" height="{_f(self.y0 - self.y1 + 8)}"/></clipPath></defs>')
        empty_attr = ' data-empty="1"' if self.x is None or self.y is None else ""
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {self.width} {self.height}" '
            f'width="{self.width}" height="{self.height}" font-family="{escape(FONT)}" role="img" '
            f'aria-label="{escape(self.title)}" data-chart="{escape(self.slug)}"'
            f"{empty_attr}>"
            f"<title>{escape(self.title)}</title>{clip}{''.join(body)}</svg>"
        )


def empty(slug: str, title: str, why: str, *, width: int = 560, height: int = 120) -> Chart:
    """A placeholder chart that says why there is nothing to draw."""
    c = Chart(slug, title, width=width, height=height)
    c.empty_text = why
    return c
