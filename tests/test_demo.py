"""The bundled demo: deterministic shape images, the trained model, and `semiotui demo --export`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from semiotui.engine.demo import (
    CLASSES,
    INPUT_SPEC,
    DemoNet,
    demo_samples,
    export_demo,
    load_demo_model,
    preprocess,
)
from semiotui.engine.analysis import AnalysisSettings
from semiotui.tui.cli import main


def pixels(samples: list[tuple[Image.Image, int]]) -> list[bytes]:
    return [image.tobytes() for image, _ in samples]


@pytest.fixture(scope="module")
def model() -> DemoNet:
    return load_demo_model()


@pytest.fixture(scope="module")
def val() -> list[tuple[Image.Image, int]]:
    return demo_samples("val", 300)


def test_samples_are_deterministic_and_prefixes_agree():
    first = demo_samples("train", 24, seed=3)
    assert pixels(first) == pixels(demo_samples("train", 24, seed=3))
    assert pixels(first[:10]) == pixels(demo_samples("train", 10, seed=3))
    assert pixels(first) != pixels(demo_samples("train", 24, seed=4))


def test_train_and_val_share_no_image(val):
    assert not set(pixels(demo_samples("train", 600))) & set(pixels(val))
    assert len(set(pixels(val))) == len(val)


def test_samples_are_balanced_64x64_rgb(val):
    counts = np.bincount([label for _, label in val], minlength=len(CLASSES))
    assert len(CLASSES) >= 6 and len(set(CLASSES)) == len(CLASSES)
    assert counts.min() >= len(val) // len(CLASSES) and counts.max() - counts.min() <= 1
    assert {(image.mode, image.size) for image, _ in val} == {("RGB", (64, 64))}


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="unknown demo split"):
        demo_samples("test", 1)


def test_preprocess_normalises_with_the_input_spec():
    image = Image.new("RGB", (64, 64), (255, 0, 128))
    x = preprocess(image)
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 0, 128), INPUT_SPEC.mean, INPUT_SPEC.std)]
    assert torch.allclose(x[:, 0, 0], torch.tensor(expected), atol=1e-6)
    assert preprocess(image.convert("L").resize((32, 32))).shape == (3, 64, 64)


def test_model_is_small_vgg_like_and_in_eval_mode(model):
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(convs) >= 6 and len(pools) >= 2
    assert 100_000 <= sum(p.numel() for p in model.parameters()) <= 300_000
    assert not model.training


def test_bundled_model_held_out_accuracy_is_at_least_95_percent(model, val):
    x = torch.stack([preprocess(image) for image, _ in val])
    labels = torch.tensor([label for _, label in val])
    with torch.no_grad():
        predicted = model(x).argmax(1)
    accuracy = (predicted == labels).float().mean().item()
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}"
    assert set(predicted.tolist()) == set(range(len(CLASSES)))


def test_export_writes_images_model_and_preprocessing(tmp_path, model):
    out = export_demo(tmp_path / "demo", count=20)
    assert out == tmp_path / "demo"
    assert sorted(p.name for p in out.iterdir()) == sorted([*CLASSES, "demo_model.pt", "preprocess.json"])
    pngs = sorted(out.glob("*/*.png"))
    assert len(pngs) == 20
    assert all(p.name.startswith(p.parent.name + "_") for p in pngs)
    assert sorted(p.name for p in (out / "circle").iterdir())[0] == "circle_0000.png"
    assert not list(tmp_path.glob(".*")), "no staging folder left behind"

    spec = json.loads((out / "preprocess.json").read_text())
    assert spec == {"input_size": [64, 64], "mean": list(INPUT_SPEC.mean),
                    "std": list(INPUT_SPEC.std), "classes": CLASSES}

    exported = torch.load(out / "demo_model.pt", weights_only=False)
    image, label = demo_samples("val", 20)[0]
    assert np.array_equal(np.asarray(Image.open(out / CLASSES[label] / f"{CLASSES[label]}_0000.png")),
                          np.asarray(image))
    x = torch.stack([preprocess(Image.open(p)) for p in pngs[:8]])
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))


def test_export_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    export_demo(tmp_path / "empty", count=8)
    assert len(list((tmp_path / "empty").glob("*/*.png"))) == 8


@pytest.mark.parametrize("occupied", ["folder", "file"])
def test_export_refuses_an_occupied_target_and_touches_nothing(tmp_path, occupied):
    target = tmp_path / "out"
    if occupied == "folder":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    else:
        target.write_text("mine")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    with pytest.raises(FileExistsError, match="not an empty folder"):
        export_demo(target, count=4)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_cli_demo_export(tmp_path, capsys):
    assert main(["demo", "--export", str(tmp_path / "demo")]) == 0
    assert len(list((tmp_path / "demo").glob("*/*.png"))) == 300
    assert main(["demo", "--export", str(tmp_path / "demo")]) == 1
    assert "not an empty folder" in capsys.readouterr().err


def test_the_demo_opens_with_its_own_class_names_and_normalisation(tmp_path):
    """Its images in folders of other names still get the demo's class names, and no normalisation is guessed."""
    from semiotui.engine import open_workspace

    export_demo(tmp_path / "demo", count=6)
    renamed = tmp_path / "renamed"
    (tmp_path / "demo").rename(renamed)
    workspace = open_workspace(None, images=[renamed], settings=AnalysisSettings(device="cpu"))
    assert workspace.class_names == list(CLASSES)
    assert not any("normalised" in w for w in workspace.warnings)
