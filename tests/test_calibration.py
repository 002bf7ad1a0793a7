"""The calibration's quick slice (engine/calibration.py): a positive network gets a claim, the negatives none."""

import numpy as np
import pytest

from semiotui.engine.analysis import analyse
from semiotui.engine.calibration import NEGATIVE, QUICK, calibrate, clutter_images, configuration, select
from semiotui.engine.control import ControlSettings, control_analysis

pytestmark = pytest.mark.slow  # trains small networks


@pytest.fixture(scope="module")
def quick():
    return calibrate(QUICK)


def test_the_positive_network_is_claimed_in_every_configuration_and_no_negative_is(quick):
    runs, found = quick
    positive = [v for v in found if v.kind == "positive"]
    assert positive and all(v.claimed for v in positive), [v for v in positive if not v.claimed]
    negative = [v for v in found if v.kind in NEGATIVE]
    assert {v.kind for v in negative} == set(NEGATIVE)  # the random-label network among them, trained here
    assert not any(v.claimed for v in negative), [v for v in negative if v.claimed]


def test_the_positive_network_localises_the_object_and_the_random_label_one_does_not(quick):
    runs, _ = quick
    share = {r.kind: r.localisation for r in runs}
    accuracy = {r.kind: r.accuracy for r in runs}
    assert accuracy["positive"] > 0.8 and accuracy["random labels"] < 0.5
    # Checked without entropy: the positive network's deeper maps hold the object's box well above its
    # share of the image (0.05); the random-label network's stay near it.
    assert np.nanmax(share["positive"][2:]) > 2 * np.nanmax(share["random labels"][2:])


def test_a_configuration_read_from_the_full_run_is_what_a_run_with_those_layers_gives(quick):
    runs, _ = quick
    run = next(r for r in runs if r.kind == "positive")
    cols = select(run.result.layers, "two")
    layers = [run.result.layers[j] for j in cols]
    images, labels, _ = clutter_images(QUICK.images, 1_000_000 + QUICK.seeds[0], size=QUICK.size)
    model = run.model
    alone = analyse(model, [(images, labels)], layers, QUICK.analysis)
    alone.control = control_analysis(model, [(images, labels)], alone,
                                     ControlSettings(draws=8, images=QUICK.control_images))
    assert np.allclose(alone.entropy, run.result.entropy[:, cols], atol=1e-9)
    assert np.allclose(alone.control.entropy, run.control.entropy[:8][:, :, cols], atol=1e-9)
    a, b = alone.superization(), configuration(run.result, run.control, cols, 8)
    assert [s.claimed for s in a.spans] == [s.claimed for s in b.spans]
    assert np.allclose([s.p_null for s in a.spans], [s.p_null for s in b.spans])
