"""`semiotui report`'s output folder (issue 14, items 2, 4, 5 and 9).

--force never removes an input, the current or home folder, or a folder that
is not only a report; the folder is checked and claimed before the analysis,
so a concurrent run or a folder made meanwhile is never overwritten; Ctrl-C
and SIGTERM write the partial report; a killed run's staging folder is removed
by the next run. No input file changes under any of them.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import only_error_line, report_args, write_tiny_inputs

from semiotui.engine.saved import open_report
from semiotui.tui import commands
from semiotui.tui.cli import main

IMAGES = 16


@pytest.fixture
def inputs(tmp_path) -> Path:
    """tiny.pth and images/ in tmp_path/inputs; the working directory is tmp_path/work and HOME tmp_path/home."""
    for name in ("inputs", "work", "home"):
        (tmp_path / name).mkdir()
    return write_tiny_inputs(tmp_path / "inputs", images=IMAGES, size=16, classes=2)


def tree(folder: Path) -> dict[str, str | None]:
    """Every path under `folder`, hidden ones included, with its sha256 (None for folders)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


FORCED = {  # -o given with --force: the message that refuses it
    "the images folder": ("{i}/images", "is or holds .*images, an input of this run"),
    "a folder holding the images and the model": ("{i}", "is or holds .*, an input of this run"),
    "a folder that holds no report": ("{t}/mine", "not a semiotui report folder"),
    "the current folder": (".", r"\. is the current folder"),
    "the parent of the current folder": ("..", r"\.\. is or holds the current folder"),
    "the home folder": ("~", "is or holds your home folder"),
    "the root folder": ("/", "/ is or holds the current folder"),
}


@pytest.mark.parametrize("case", FORCED)
def test_force_refuses_inputs_and_folders_that_are_not_a_report_before_analysing(case, inputs, tmp_path, capsys,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "work" / "notes.txt").write_text("mine")
    (tmp_path / "home" / "notes.txt").write_text("mine")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    out, message = FORCED[case]
    status = main(report_args(inputs, out.replace("{i}", str(inputs)).replace("{t}", str(tmp_path)), "--force"))
    line = only_error_line(capsys.readouterr().err)  # one line: nothing was analysed first
    assert status == 1
    assert re.search(message, line), line
    assert tree(tmp_path) == before


def test_an_existing_folder_is_refused_before_the_analysis(inputs, tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    assert main(report_args(inputs, tmp_path / "mine")) == 1
    line = only_error_line(capsys.readouterr().err)  # no "analysed ..." line before it
    assert "already exists" in line and "--force" in line
    assert tree(tmp_path) == before


def test_force_keeps_a_file_put_in_the_images_folder_and_replaces_only_what_the_report_lists(inputs, tmp_path,
                                                                                               capsys):
    out = tmp_path / "report"
    assert main(report_args(inputs, out)) == 0
    capsys.readouterr()
    shutil.copy(inputs / "images" / "c0" / "00.png", out / "images" / "mine.png")  # a PNG, as the report's are
    before = tree(tmp_path)
    assert main(report_args(inputs, out, "--force")) == 1
    line = only_error_line(capsys.readouterr().err)  # before the analysis
    assert "holds images/mine.png, which semiotui does not write" in line
    assert tree(tmp_path) == before
    (out / "images" / "mine.png").unlink()
    (out / "images" / "classes.svg").write_text("changed")  # a file the report lists: replaced
    assert main(report_args(inputs, out, "--force")) == 0
    assert (out / "images" / "classes.svg").read_text().startswith("<svg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "inputs", "report", "work"]


def test_a_folder_made_during_the_analysis_is_never_replaced(inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "report"
    analyse = commands.analyse_with_progress

    def analyse_then_someone_makes_the_folder(*args, **kwargs):
        result = analyse(*args, **kwargs)
        out.mkdir()
        (out / "mine.txt").write_text("mine")
        return result

    monkeypatch.setattr(commands, "analyse_with_progress", analyse_then_someone_makes_the_folder)
    assert main(report_args(inputs, out, "--force")) == 1
    err = capsys.readouterr().err
    assert "not a semiotui report folder" in err.splitlines()[-1]
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "inputs", "report", "work"]


@pytest.mark.slow  # two commands in subprocesses
def test_two_reports_into_one_folder_never_both_write_it(inputs, tmp_path):
    out = tmp_path / "report"
    runs = [subprocess.Popen([sys.executable, "-m", "semiotui", *report_args(inputs, out, "--force", arch="SlowNet")],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outcomes = sorted((run.wait(timeout=300), run.stderr.read()) for run in runs)
    assert [status for status, _ in outcomes] == [0, 1], outcomes
    assert "report written" in outcomes[0][1]
    assert "another semiotui is writing a report into" in only_error_line(outcomes[1][1])
    assert json.loads((out / "report.json").read_text())["analysis"]["images"] == IMAGES
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "inputs", "report", "work"]


@pytest.mark.slow  # a command in a subprocess
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_report_is_written_partial_and_exits_128_plus_the_signal(sent, inputs, tmp_path):
    out = tmp_path / "report"
    before = tree(inputs)
    run = subprocess.Popen([sys.executable, "-m", "semiotui", *report_args(inputs, out, "--batch-size", "2",
                                                                           arch="SlowNet")],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in run.stderr:
        if line.startswith("analysed ") and not any(seen.startswith("analysed ") for seen in lines):
            run.send_signal(sent)
        lines.append(line)
    assert run.wait(timeout=300) == 128 + sent, "".join(lines)
    assert not any("error" in line for line in lines), "".join(lines)
    assert "partial" in lines[-1]
    data = json.loads((out / "report.json").read_text())
    assert data["analysis"]["cancelled"] and 0 < data["analysis"]["images"] < IMAGES
    assert "images, analysis cancelled)" in (out / "report.md").read_text()
    assert tree(inputs) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "inputs", "report", "work"]


def test_a_model_that_fails_on_its_third_batch_names_the_batch_and_its_images_and_writes_the_partial_report(
        inputs, tmp_path, capsys):
    out = tmp_path / "report"
    before = tree(inputs)
    status = main(report_args(inputs, out, "--batch-size", "4", arch="FailsOnThirdBatch"))
    lines = capsys.readouterr().err.splitlines()
    assert status == 1
    failed = ("the analysis failed on batch 3 (images/c1/01.png, images/c1/03.png, images/c1/05.png, "
              "images/c1/07.png): the model broke on this batch")
    assert f"semiotui: error: {failed}" in lines  # said as it happens; the summary of the 8 images follows
    assert lines[-1] == f"semiotui: report written to {out} (partial: the analysis failed)"
    data = json.loads((out / "report.json").read_text())
    assert data["analysis"]["images"] == 8 and data["analysis"]["partial"] == "failed"
    assert data["analysis"]["failed"] == failed
    assert "(partial: 8 of 16 images, analysis failed)" in (out / "report.md").read_text()
    assert open_report(out).result.partial == "failed"  # reopened, it still says why it is partial
    assert tree(inputs) == before


@pytest.mark.slow  # a command in a subprocess
def test_ctrl_c_during_the_control_writes_the_report_with_the_networks_done(inputs, tmp_path):
    out = tmp_path / "report"
    arguments = [a for a in report_args(inputs, out, "--control-draws", "6", "--control-images", "4", arch="SlowNet")
                 if a != "--no-control"]
    run = subprocess.Popen([sys.executable, "-m", "semiotui", *arguments], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in run.stderr:
        if line.startswith("control network 1/"):
            run.send_signal(signal.SIGINT)
        lines.append(line)
    assert run.wait(timeout=300) == 128 + signal.SIGINT, "".join(lines)
    assert not any("error" in line for line in lines), "".join(lines)
    data = json.loads((out / "report.json").read_text())
    assert data["analysis"]["images"] == IMAGES and not data["analysis"]["cancelled"]
    assert data["control"] is None or data["control"]["cancelled"]


KILLED_WHILE_WRITING = """
import os, signal, sys
from semiotui.engine.reports import write
from semiotui.tui.cli import main
write.report_html = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # a command in a subprocess
def test_the_next_run_removes_what_a_killed_run_left_beside_the_report(inputs, tmp_path, capsys):
    out = tmp_path / "report"
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_WRITING, *report_args(inputs, out)],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(tmp_path.glob(".report.*")), "the killed run left its staging folder"
    assert main(report_args(inputs, out)) == 0
    assert "report written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "inputs", "report", "work"]
