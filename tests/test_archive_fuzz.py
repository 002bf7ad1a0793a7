"""The archive check under a seeded mutation fuzzer: no crafted .pt2 runs code without --trust (issue 21).

`archive_fuzz` makes each case from a genuine export; benchmarks/fuzz_archives.py runs thousands.
"""

from __future__ import annotations

import collections

import pytest
from archive_fuzz import genuine_archives, run_case

pytestmark = pytest.mark.slow  # hundreds of crafted archives

CASES = 400


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    return genuine_archives(tmp_path_factory.mktemp("genuine"))


def test_no_mutated_archive_runs_code_and_every_refusal_is_one_line(genuine, tmp_path):
    results = collections.Counter()
    problems = []
    for seed in range(CASES):
        outcome = run_case(genuine[seed % len(genuine)], seed, tmp_path)
        results[outcome.result] += 1
        if outcome.problem:
            problems.append(f"case {seed} ({outcome.description}): {outcome.problem}")
    assert not problems, "\n".join(problems[:10])
    assert results["loaded"] >= 10 and results["refused"] >= CASES // 2  # the mutations reach both outcomes


def test_the_fuzzer_would_see_code_run(genuine, tmp_path, monkeypatch):
    """Without the check, some mutated archive runs its payload: the canary is a real witness."""
    from semiotui.engine import loading

    monkeypatch.setattr(loading, "check_archive", lambda data: None)
    ran = [run_case(genuine[seed % len(genuine)], seed, tmp_path).ran_code for seed in range(200)]
    assert any(ran)
