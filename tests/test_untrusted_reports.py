"""A report folder from someone else is read or refused in one short, clean line, and runs none of its code.

`semiotui open` and `semiotui compare` read report folders, which may be crafted. The fuzz test reads a few
hundred seeded mutations of a genuine report (tests/report_fuzz.py; benchmarks/fuzz_reports.py runs thousands);
the others pin what it found.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import report_fuzz
from helpers import only_error_line

from semiotui.engine.errors import InvalidValue
from semiotui.engine.saved import open_report
from semiotui.tui.cli import main

pytestmark = pytest.mark.slow  # hundreds of crafted report folders

SEED, CASES = 0, 300


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    return report_fuzz.genuine_report(tmp_path_factory.mktemp("genuine"))


def test_crafted_report_folders_are_read_or_refused_in_one_short_clean_line(genuine, tmp_path):
    outcomes = [report_fuzz.run_case(genuine, tmp_path, SEED, number) for number in range(CASES)]
    failed = [f"case {o.number} ({'; '.join(o.mutations)}): {' | '.join(o.failures)}" for o in outcomes if o.failures]
    assert not failed, f"{len(failed)} of {CASES} cases failed:\n" + "\n".join(failed[:10])
    read = sum(o.read for o in outcomes)
    assert 0 < read < CASES  # the mutations leave some reports readable and spoil the others
    tried = {m.partition(":")[0] for o in outcomes for m in o.mutations}
    assert tried == set(report_fuzz.MUTATIONS)


def crafted(genuine: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "crafted"
    shutil.copytree(genuine, folder)
    data = json.loads((folder / "report.json").read_text())
    change(data)
    (folder / "report.json").write_text(json.dumps(data))
    return folder


def test_a_50_mb_image_path_is_refused_in_a_short_line(genuine, tmp_path, capsys):
    def long_path(data: dict) -> None:
        data["images"][data["control"]["rows"][0]]["path"] = "x" * 50_000_000

    folder = crafted(genuine, tmp_path, long_path)
    with pytest.raises(InvalidValue) as err:
        open_report(folder)
    assert len(str(err.value)) <= report_fuzz.MAX_LINE
    for command in (["open", str(folder)], ["compare", str(folder), str(genuine), "-o", str(tmp_path / "ab")]):
        assert main(command) == 1
        line = only_error_line(capsys.readouterr().err)
        assert "control.csv: row 1 is not network" in line and "xxx..." in line
        assert not report_fuzz.line_faults(line)


@pytest.mark.parametrize("name", ["report.json", "entropy.csv", "control.csv"])
def test_a_terabyte_file_is_refused_before_it_is_read(name, genuine, tmp_path):
    folder = tmp_path / "sparse"
    shutil.copytree(genuine, folder)
    os.truncate(folder / name, 1 << 40)  # sparse: no disk taken, as an archive can unpack it
    with pytest.raises(InvalidValue, match=f"{name} is larger than the 1 GiB semiotui open reads"):
        open_report(folder)
