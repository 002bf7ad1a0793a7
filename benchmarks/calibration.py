"""How often the superization verdict is right: false positives on networks that aggregate nothing, power on ones
that do (engine/calibration.py; semiotui/docs/METHOD.md §3.5).

For each seed: a small CNN trained where a 7x7 glyph in clutter decides the
label (positive), the same architecture untrained, trained on random labels,
and the positive one with its weights shuffled (negatives). Each is analysed
on held-out images with the default settings and a control of the largest
size; every configuration (layer selection × control networks) is read from
that run. Prints the localisation of each kind (share of Grad-CAM mass in the
object's box, layer by layer: computed without entropy or control), then how
often each configuration claims superization.

Usage: python benchmarks/calibration.py [--seeds 0 1 2 3 4] [--estimator arrangement|aura|...] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from semiotui.engine.analysis import AnalysisSettings
from semiotui.engine.calibration import (KINDS, NEGATIVE, QUICK, CalibrationSettings, box_share, calibrate,
                                         clutter_images, configuration, rates, select)
from semiotui.engine.control import NULLS, ControlSettings
from semiotui.engine.entropy import ESTIMATORS
from semiotui.engine.superization import ALPHA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(CalibrationSettings.seeds))
    parser.add_argument("--estimator", choices=ESTIMATORS, default=AnalysisSettings.estimator)
    parser.add_argument("--native", action="store_true", help="measure maps at their own resolution")
    parser.add_argument("--null", choices=NULLS, default=ControlSettings.null,
                        help="how control networks are made (engine/control.py)")
    parser.add_argument("--quick", action="store_true", help="the tests' slice: tiny networks, fewer images")
    parser.add_argument("--cache", type=Path, metavar="DIR",
                        help="keep the trained networks here, and reuse them on a later run")
    parser.add_argument("--save", type=Path, metavar="FILE",
                        help="write every network's entropies and its control's (.npz) to study the verdict")
    args = parser.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    analysis = AnalysisSettings(device="cpu", batch_size=64, estimator=args.estimator, upsample=not args.native)
    base = QUICK if args.quick else CalibrationSettings()
    settings = dataclasses.replace(base, seeds=tuple(args.seeds), analysis=analysis, null=args.null)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"seeds {list(settings.seeds)}; {settings.size}x{settings.size} images, widths {list(settings.widths)}, "
          f"{settings.train_images} training images x {settings.epochs} epochs; {settings.images} analysed, "
          f"{settings.control_images} control images; estimator {analysis.estimator} at "
          f"{'the input' if analysis.upsample else 'native'} resolution, {analysis.method}; null {settings.null}",
          flush=True)
    start = time.perf_counter()
    runs, found = calibrate(settings, cache=args.cache, progress=lambda line: print(line, flush=True))
    if args.save:
        np.savez_compressed(args.save, **{
            f"{r.kind}/{r.seed}/{part}": value for r in runs for part, value in (
                ("entropy", r.result.entropy), ("empty", r.result.empty), ("control", r.control.entropy),
                ("control_empty", r.control.empty), ("rows", np.array(r.control.rows)),
                ("localisation", r.localisation))})
    names = runs[0].result.layers
    boxes = clutter_images(settings.images, 1_000_000 + settings.seeds[0], size=settings.size)[2]

    print(f"\nlocalisation: share of Grad-CAM mass inside the object's box (an even spread: "
          f"{box_share(boxes, settings.size):.2f}), mean over seeds; accuracy on the analysed images")
    print(f"{'network':<14} {'accuracy':>8}  " + " ".join(f"{n:>6}" for n in names))
    for kind in KINDS:
        mine = [r for r in runs if r.kind == kind]
        share = np.nanmean(np.stack([r.localisation for r in mine]), axis=0)
        print(f"{kind:<14} {np.mean([r.accuracy for r in mine]):>8.2f}  " + " ".join(f"{v:>6.2f}" for v in share))

    table = rates(found)
    print(f"\nsuperization claimed (runs claiming / runs), {len(settings.seeds)} seeds")
    configs = [(s, d) for s in settings.selections for d in settings.draws]
    print(f"{'network':<14} " + " ".join(f"{f'{s}, K={d}':>16}" for s, d in configs))
    for kind in KINDS:
        print(f"{kind:<14} " + " ".join(f"{'%d/%d' % table[(kind, s, d)]:>16}" for s, d in configs))
    negative = [v.claimed for v in found if v.kind in NEGATIVE]
    positive = [v.claimed for v in found if v.kind == "positive"]
    worst = max(table[(k, s, d)][0] / table[(k, s, d)][1] for k in NEGATIVE for s, d in configs)
    print(f"\nfalse-positive rate (negatives, every configuration): {np.mean(negative):.1%} "
          f"({sum(negative)} of {len(negative)} runs; worst configuration {worst:.0%})")
    print(f"power (positives): {np.mean(positive):.1%} ({sum(positive)} of {len(positive)} runs; weakest "
          f"configuration {min(table[('positive', s, d)][0] / table[('positive', s, d)][1] for s, d in configs):.0%})")
    ranges = sorted({v.finding for v in found if v.kind == "positive" and v.finding})
    print(f"ranges found on the positives: {', '.join(ranges) or 'none'}")
    ablations(runs, settings)
    print(f"{time.perf_counter() - start:.0f} s in all")


def ablations(runs, settings: CalibrationSettings) -> None:
    """The same runs read by weaker verdicts: what each part of the verdict (semiotui/docs/METHOD.md §3.4) is for."""
    variants = {
        "the verdict": lambda sup: bool(sup.claimed),
        "without test 3 (the level)": lambda sup: any(
            s.untested is None and s.drop > 0 and max(s.p_drop, s.p_null) < ALPHA for s in sup.spans),
        "adjacent steps only": lambda sup: any(s.claimed and sup.parents[s.end] == s.start for s in sup.spans),
    }
    print("\nparts of the verdict: false-positive rate (negatives) and power (positives), every configuration")
    for name, claims in variants.items():
        hits = {True: [], False: []}
        for run in runs:
            for selection in settings.selections:
                cols = select(run.result.layers, selection)
                for draws in settings.draws:
                    hits[run.kind == "positive"].append(claims(configuration(run.result, run.control, cols, draws)))
        print(f"  {name:<28} false positives {np.mean(hits[False]):6.1%}   power {np.mean(hits[True]):6.1%}")


if __name__ == "__main__":
    main()
