"""report.html: the report as one self-contained page (its stylesheet, charts and tiles inline; opens offline)."""

from __future__ import annotations

import base64
from importlib.resources import files

from ..names import html_text
from .content import CONFUSION_NOTE, ESTIMATOR_TEXT, LAYER_COLUMNS, LAYER_NOTE, PRUNING_COLUMNS, SPAN_COLUMNS, Report

# The reports' stylesheet (this one's and the comparison's), put inside each page's <style>.
STYLESHEET = files(__package__).joinpath("report.css").read_text(encoding="utf-8")


def report_html(report: Report, screenshot: str | None) -> str:
    """The page; `screenshot` an SVG of the interface to show at its end."""
    data = report.data
    s = data["settings"]
    rows = []
    for i, row in enumerate(report.layers, start=1):
        cells = "".join(f"<td class=n>{n}</td>" for n in row.numbers)
        rows.append(
            f"<tr class=\"{'sig' if row.significant else ''}\"><td>{i}</td><td><code>{html_text(row.name)}</code></td>"
            f"<td>{html_text(row.type)}</td><td>{row.shape}</td>{cells}<td>{html_text(row.verdict)}</td></tr>"
        )
    pruning_html = ""
    if report.pruning_text is not None:
        head_cells = "".join(f"<th>{html_text(c)}</th>" for c in PRUNING_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html_text(c)}</td>" for c in row) + "</tr>" for row in report.pruning)
        pruning_html = (f"<h2>Pruning steps</h2><p class=note>{html_text(report.pruning_text)}</p>"
                        f"<div class=scroll><table class=layers><tr>{head_cells}</tr>{body}</table></div>")
    matrix = report.confusion
    confusion_html = ""
    if matrix:
        head_row = "".join(f"<th>{html_text(c)}</th>" for c in matrix[0])
        body_rows = "".join("<tr><th>" + html_text(row[0]) + "</th>" + "".join(f"<td class=n>{c}</td>" for c in row[1:])
                            + "</tr>" for row in matrix[1:])
        confusion_html = (f"<h2>Confusion</h2><p class=note>{html_text(CONFUSION_NOTE)}</p><div class=scroll>"
                          f"<table class=layers><tr><th>label \\ predicted</th>{head_row}</tr>{body_rows}</table></div>")
    grids = []
    head = "".join(f"<th>{html_text(name)}</th>" for name in ["image", "input", *(row.name for row in report.layers)])
    for section in report.maps:
        body = []
        for image in section.rows:
            cells = "".join(
                f"<td><img src=\"data:image/png;base64,{base64.b64encode(t.png).decode()}\" "
                f"alt=\"{html_text(t.layer or 'input')}\" title=\"{html_text(t.layer or image.path)}\"></td>"
                for t in image.tiles
            )
            body.append(f"<tr><th class=img>{html_text(image.path)}<br><small>{html_text(image.caption)}</small></th>"
                        f"{cells}</tr>")
        grids.append(f"<h2>{html_text(section.title)}</h2><p class=note>{html_text(section.note)}</p>"
                     f"<div class=scroll><table class=maps><tr>{head}</tr>{''.join(body)}</table></div>")
    sections = "".join(f"<h2>{html_text(chart.title)}</h2><p class=note>{html_text(chart.note)}</p>{chart.svg}"
                       for chart in report.charts)
    if report.spans:
        head_cells = "".join(f"<th>{html_text(c)}</th>" for c in SPAN_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td{'' if i == 0 else ' class=n'}>{html_text(c)}</td>"
                                        for i, c in enumerate(row)) + "</tr>" for row in report.spans)
        sections += (f"<h2>Where aggregation happens</h2><p class=note>{html_text(report.span_note)}</p>"
                     f"<div class=scroll><table class=layers><tr>{head_cells}</tr>{body}</table></div>")
    skipped = ""
    if data["skipped"]:
        items = "".join(f"<li><code>{html_text(x['path'])}</code>: {html_text(x['reason'])}</li>" for x in data["skipped"])
        skipped = f"<h2>Skipped files</h2><ul>{items}</ul>"
    shot = f"<h2>Interface</h2><div class=shot>{screenshot}</div>" if screenshot else ""
    model = data["model"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>semiotui report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
{STYLESHEET}</style></head><body>
<header><h1>semiotui report</h1>
<p class=meta>Model <code>{html_text(model['path'] or 'bundled demo')}</code> ({html_text(model['format'])},
{model['parameters']:,} parameters) · {len(data['images'])} images<b>{html_text(report.partial)}</b> · {html_text(report.accuracy)}
· method <b>{html_text(s['method'])}</b> · estimator <b>{html_text(s['estimator'])}</b> ({s['levels']} levels,
{'input' if s['upsample'] else 'native'} resolution) · target {html_text(str(s['target']))} · device {html_text(s['device'])}
· {html_text(data['created'])} · semiotui {html_text(data['semiotui'])}</p>
<p class=summary>{html_text(' '.join(data['summary']))}</p>
{''.join(f"<p class=warning><b>Warning:</b> {html_text(w)}</p>" for w in data['warnings'])}</header>
{sections}
<h2>Layers</h2><p class=note>{html_text(LAYER_NOTE)}</p><div class=scroll><table class=layers><tr><th>#</th>
{''.join(f"<th>{html_text(c)}</th>" for c in LAYER_COLUMNS)}</tr>
{''.join(rows)}</table></div>
{pruning_html}{confusion_html}{''.join(grids)}{skipped}{shot}
<footer>Entropy: {html_text(ESTIMATOR_TEXT.get(s['estimator'], s['estimator']))}; {html_text(s['significance'])};
control: {html_text(data['control']['method'] if data['control'] else 'none')}.
Every number is in report.json.</footer>
</body></html>
"""
