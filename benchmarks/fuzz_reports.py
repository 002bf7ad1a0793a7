"""Crafted report folders, by the thousand: each read as `semiotui open` and `semiotui compare` read them.

Writes a genuine report of a tiny model, then runs N seeded cases of tests/report_fuzz.py (the mutations the
test suite runs a few hundred of): each case is that report with one to three mutations, read by the engine,
opened (the interface stubbed) and compared with the genuine report. Prints how many were read, how many
refused, and the cases that failed what reading must do (one short, clean line on refusal; no code run), each
with its mutations so that it can be replayed (`--seed S --first K --cases 1`). Exits 1 if any failed.

    python benchmarks/fuzz_reports.py [--cases 3000] [--seed 0]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import report_fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3000, help="cases to run (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations (default 0)")
    parser.add_argument("--first", type=int, default=0, help="number of the first case (default 0)")
    parser.add_argument("--show", type=int, default=20, help="failed cases to print (default 20)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="semiotui-fuzz-") as scratch:
        base = Path(scratch)
        genuine = report_fuzz.genuine_report(base / "genuine")
        (base / "cases").mkdir()
        start = time.perf_counter()
        read, failed = 0, []
        for number in range(args.first, args.first + args.cases):
            outcome = report_fuzz.run_case(genuine, base / "cases", args.seed, number)
            read += outcome.read
            if outcome.failures:
                failed.append(outcome)
        seconds = time.perf_counter() - start
    print(f"{args.cases} cases (seed {args.seed}) in {seconds:.0f} s: {read} read, {args.cases - read} refused, "
          f"{len(failed)} failed")
    for outcome in failed[: args.show]:
        print(f"case {outcome.number}: {'; '.join(outcome.mutations)}")
        for failure in outcome.failures:
            print(f"    {failure}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
