"""report.md: the report as Markdown, its charts and map tiles beside it in images/."""

from __future__ import annotations

import re
from urllib.parse import quote

from ..names import readable
from .content import CONFUSION_NOTE, LAYER_COLUMNS, LAYER_NOTE, PRUNING_COLUMNS, SPAN_COLUMNS, Report

# Characters Markdown gives a meaning to wherever they stand (HTML's are escaped as entities).
# What CommonMark (with tables) reads as more than text: emphasis, links, code, cells, headings, a link's
# title's end; `<` before a tag's name and `&` before an entity. A backslash escapes any of them and shows
# nothing; the rest of a sentence ("p < 0.01", "the model's") stays as written in the raw file.
_MARKDOWN_ACTIVE = re.compile(r"[\\`*_\[\]|~#\"]|<(?=[A-Za-z/!?])|&(?=#?\w+;)")


def md(text: str) -> str:
    """Text with names from outside as literal Markdown: no HTML, link, emphasis or table cell can come of it."""
    return _MARKDOWN_ACTIVE.sub(lambda m: "\\" + m.group(0), readable(text))


def md_code(text: str, *, cell: bool = False) -> str:
    """A name as a code span, whose content Markdown shows as written: fenced by more backticks than it holds.

    In a table `cell`, a `|` would still end the cell, and is escaped (the table reads the escape first).
    """
    text = readable(text)
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    if cell:
        text = text.replace("|", "\\|")
    return f"{fence}{pad}{text}{pad}{fence}"


def report_markdown(report: Report) -> str:
    data = report.data
    s = data["settings"]
    lines = [
        "# semiotui report",
        "",
        f"Model {md_code(data['model']['path'] or 'bundled demo')} ({data['model']['format']}, "
        f"{data['model']['parameters']:,} parameters); {len(data['images'])} images"
        + report.partial + "; " + report.accuracy + ".",
        f"Method **{s['method']}**, estimator **{s['estimator']}** ({s['levels']} levels, "
        f"{'input resolution' if s['upsample'] else 'native resolution'}), target {s['target']}, "
        f"device {s['device']}; {data['created']}, semiotui {data['semiotui']}.",
        "",
        *map(md, data["summary"]),
        *[f"\n> **Warning:** {md(w)}" for w in data["warnings"]],
    ]
    for chart in report.charts:
        lines += ["", f"## {chart.title}", "", chart.note, "", f"![{chart.title}](images/{chart.file})"]
    if report.spans:
        lines += ["", "## Where aggregation happens", "", md(report.span_note), "",
                  "| " + " | ".join(SPAN_COLUMNS) + " |", "|---|" + "---:|" * (len(SPAN_COLUMNS) - 1)]
        lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in report.spans]
    lines += [
        "",
        "## Layers",
        "",
        LAYER_NOTE,
        "",
        "| # | " + " | ".join(LAYER_COLUMNS) + " |",
        "|---:|---|---|---|" + "---:|" * (len(LAYER_COLUMNS) - 4) + "---|",
    ]
    for i, row in enumerate(report.layers, start=1):
        numbers = " | ".join((row.shape, *row.numbers))
        lines.append(f"| {i} | {md_code(row.name, cell=True)} | {md(row.type)} | {numbers} | "
                     f"{f'**{row.verdict}**' if row.significant else row.verdict} |")
    if report.pruning_text is not None:
        lines += ["", "## Pruning steps", "", md(report.pruning_text), "",
                  "| " + " | ".join(PRUNING_COLUMNS) + " |", "|" + "---:|" * 2 + "---|" + "---:|" * 5]
        lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in report.pruning]
    matrix = report.confusion
    if matrix:
        lines += ["", "## Confusion", "", CONFUSION_NOTE, "",
                  "| label \\ predicted | " + " | ".join(map(md, matrix[0])) + " |", "|---|" + "---:|" * len(matrix[0])]
        lines += [f"| {md(row[0])} | " + " | ".join(row[1:]) + " |" for row in matrix[1:]]
    for section in report.maps:
        lines += ["", f"## {section.title}", "", section.note, ""]
        for image in section.rows:
            lines += [f"### {md(image.path)}", "", md(image.caption), ""]
            lines += [f"![{md(t.layer or 'input')}](images/{quote(t.file)} \"{md(t.layer or 'input')}\")"
                      for t in image.tiles]
            lines.append("")
    if data["skipped"]:
        lines += ["", "## Skipped files", ""] + [f"- {md_code(s['path'])}: {md(s['reason'])}" for s in data["skipped"]]
    return "\n".join(lines) + "\n"
