"""The .pt2 check under thousands of seeded mutations: does any crafted archive run code without --trust?

Each case is a genuine torch.export archive of a small network (static,
Dim("batch"), Dim.DYNAMIC, with a tensor constant) with one to three
mutations from tests/archive_fuzz.py: members renamed in case and path,
payload configs rewritten, members inserted, duplicated or replaced by pickles
whose `__reduce__` makes a canary folder, graph nodes calling foreign
functions, evaluating shape expressions and tree specs, zip quirks. Each is
loaded as a user would (no trust) and run once if it loads. Prints how many
loaded and were refused, the refusals by kind, and every case that ran code or
was refused other than in one clear line; exits 1 if there is any.

Usage: python benchmarks/fuzz_archives.py [--cases 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import collections
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from archive_fuzz import genuine_archives, run_case  # noqa: E402  (the fuzzer lives with the tests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0, help="first case's seed; case i uses seed + i")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}")
    with tempfile.TemporaryDirectory() as folder:
        genuine = genuine_archives(Path(folder))
        results, kinds, problems = collections.Counter(), collections.Counter(), []
        start = time.perf_counter()
        for seed in range(args.seed, args.seed + args.cases):
            outcome = run_case(genuine[seed % len(genuine)], seed, Path(folder))
            results[outcome.result] += 1
            kinds[_kind(outcome.message)] += 1
            if outcome.problem:
                problems.append(f"case {seed} ({outcome.description}): {outcome.problem}")
        elapsed = time.perf_counter() - start
    ran = sum("code ran" in p for p in problems)
    print(f"{args.cases} cases in {elapsed:.0f} s: {results['loaded']} loaded, {results['refused']} refused; "
          f"code ran in {ran}; refusals not in one clear line: {len(problems) - ran}")
    print("refusals by kind:")
    for kind, count in kinds.most_common(25):
        print(f"  {count:6d}  {kind}")
    for problem in problems:
        print("PROBLEM", problem)
    return 1 if problems else 0


def _kind(message: str) -> str:
    """A refusal with its file, names and numbers taken out, to count refusals by kind."""
    if not message:
        return "(loaded)"
    text = re.sub(r"^\S+ ", "FILE ", message.split("; semiotui opens")[0])
    return re.sub(r"\d+", "N", re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text))[:100]


if __name__ == "__main__":
    sys.exit(main())
