"""One self-contained HTML page: figures embedded as base64 PNG, tables rendered from the DataFrames
that are written as CSV (each ``<table>`` names its CSV in ``data-csv``, each cell keeps the exact
value in ``data-value``; numbers quoted in the text are ``<span class="num">`` elements naming the
row of ``key_numbers.csv`` they come from). No script, no external resource."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

import pandas as pd

from .tables import fmt, raw

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 1.5em 3em; color: #222; line-height: 1.45; }
h1 { border-bottom: 3px solid #b2182b; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2.2em; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 0.82em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td.text { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #444; }
.note { background: #fff7e6; border-left: 4px solid #f0a030; padding: .4em .8em; margin: .6em 0; }
.num { font-weight: 600; }
.muted { color: #777; font-size: .85em; }
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def table_html(name: str, frame: pd.DataFrame, *, caption: str = "", max_rows: int | None = None) -> str:
    """The table ``name`` (its CSV is ``tables/NAME.csv``), rows in order, at most ``max_rows``."""
    shown = frame if max_rows is None or len(frame) <= max_rows else frame.iloc[:max_rows]
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for value in row:
            cls = ' class="text"' if isinstance(value, str) else ""
            cells.append(f'<td{cls} data-value="{esc(raw(value))}">{esc(fmt(value))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(shown) < len(frame):
        more = (f'<p class="muted">First {len(shown)} of {len(frame)} rows; the whole table is '
                f'<a href="tables/{esc(name)}.csv">tables/{esc(name)}.csv</a>.</p>')
    cap = f"<caption>{esc(caption)} <span class=\"muted\">(<a href=\"tables/{esc(name)}.csv\">{esc(name)}.csv</a>)" \
          f"</span></caption>"
    return (f'<table id="table-{esc(name)}" data-csv="tables/{esc(name)}.csv" data-rows="{len(shown)}" '
            f'data-total-rows="{len(frame)}">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f"</table>{more}")


def figure_html(name: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="figure-{esc(name)}"><img src="data:image/png;base64,{data}" alt="{esc(caption)}" '
            f'data-file="figures/{esc(name)}.png"><figcaption>{esc(caption)} '
            f'<span class="muted">(<a href="figures/{esc(name)}.png">{esc(name)}.png</a>)</span></figcaption></figure>')


def note_html(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


class Numbers:
    """Spans quoting ``key_numbers.csv``: ``numbers("name")`` renders the value of that row."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.values = dict(zip(frame["name"], frame["value"]))
        self.units = dict(zip(frame["name"], frame["unit"]))

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __call__(self, name: str, *, unit: bool = True, percent: bool = False) -> str:
        value = self.values[name]
        text = fmt(value)
        if percent:
            text = fmt(100 * value) + " %"
        elif unit and self.units.get(name) not in ("", "1", None):
            text = f"{text} {self.units[name]}"
        scale = ' data-scale="100"' if percent else ""
        return (f'<span class="num" data-table="key_numbers" data-key="{esc(name)}" data-value="{esc(raw(value))}"'
                f'{scale}>{esc(text)}</span>')


@dataclass
class Section:
    id: str
    title: str
    blocks: list[str] = field(default_factory=list)

    def add(self, *blocks: str) -> "Section":
        self.blocks.extend(blocks)
        return self

    def p(self, text_html: str) -> "Section":
        """A paragraph of HTML (the caller escapes what it interpolates)."""
        self.blocks.append(f"<p>{text_html}</p>")
        return self


def page_html(title: str, subtitle: str, sections: list[Section]) -> str:
    nav = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{"".join(s.blocks)}</section>'
                   for s in sections)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
            f'initial-scale=1"><title>{esc(title)}</title><style>{STYLE}</style></head>'
            f'<body><header><h1>{esc(title)}</h1><p class="muted">{esc(subtitle)}</p></header>'
            f"<nav><ol>{nav}</ol></nav>{body}</body></html>\n")
