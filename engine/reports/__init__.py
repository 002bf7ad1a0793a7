"""Report folders: report.html (self-contained), report.md, report.json, entropy.csv, PNG heatmaps.

`content` computes what every format shows, once: report.json's numbers (`data`), the charts (`figures`),
the map tiles (`png`), the tables' cells and sentences. `markdown`, `html_page` and `csv_files` write it
in their format; `write` builds the folder; `comparison` is the report of two models side by side.
Which folders may be written or replaced, and how one is claimed for a run, is `engine.report_folder`.

This file holds only what the command line's options name, so reading them loads no module of the reports.
"""

FORMATS = ("html", "md", "json", "csv")
DEFAULT_MAPS = 6  # images whose maps a report draws, unless told otherwise
