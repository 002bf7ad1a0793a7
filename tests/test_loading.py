"""engine.loading: every model format, the safety of pickles, the input spec and its dry run."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from semiotui.engine import analyse
from semiotui.engine.layers import index_layers
from semiotui.engine.loading import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LoadError,
    check_input_size,
    input_spec,
    layer_index,
    load_model,
)
from semiotui.engine.saliency import layer_saliency
from semiotui.engine.workspace import InputSpec
from semiotui.tui.cli import build_parser
from semiotui.tui.workspace_args import workspace_from_args

NETS = '''
from torch import nn


class Net(nn.Module):
    def __init__(self, classes=4, width=6):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))
'''


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """A user's own model module, `mynets.Net`, importable only through --pythonpath."""
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "mynets.py").write_text(textwrap.dedent(NETS))
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_model's --pythonpath insertion is undone
    yield folder
    sys.modules.pop("mynets", None)


def tiny_state(classes: int = 4) -> dict[str, torch.Tensor]:
    conv = nn.Conv2d(3, 6, 3, padding=1)
    fc = nn.Linear(6, classes)
    return {"conv.weight": conv.weight.data, "conv.bias": conv.bias.data, "fc.weight": fc.weight.data,
            "fc.bias": fc.bias.data}


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict", "net", "weights"])
def test_checkpoint_under_each_usual_key_loads_with_the_module_prefix_stripped(tmp_path, nets, key):
    state = tiny_state()
    path = tmp_path / "ckpt.pth"
    torch.save({key: {f"module.{k}": v for k, v in state.items()}, "epoch": 7, "classes": list("abcd")}, path)
    loaded = load_model(path, arch="mynets:Net", pythonpath=[nets])
    assert loaded.info.format == "checkpoint"
    assert loaded.class_names == list("abcd")
    assert loaded.spec_defaults is None  # unknown for a user's class: the caller uses 224 and ImageNet
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, state[k])
    assert not loaded.model.training


def test_bare_state_dict_needs_arch_and_loads_with_arch_kwargs(tmp_path, nets):
    path = tmp_path / "weights.pt"
    torch.save(tiny_state(classes=3), path)
    with pytest.raises(LoadError, match=r"holds a state dict \(4 tensors\).*`arch`"):
        load_model(path)
    loaded = load_model(path, arch="mynets:Net", arch_kwargs={"classes": 3}, pythonpath=[nets])
    assert loaded.info.format == "state_dict" and loaded.info.arch == "mynets:Net"
    assert loaded.info.parameters == sum(v.numel() for v in tiny_state(3).values())


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_a_file_saved_with_a_newer_pickle_protocol_loads_as_far_as_the_safe_unpickler_reads(tmp_path, nets, zipped):
    for protocol in (3, 4, 5):
        path = tmp_path / f"weights{protocol}.pt"
        torch.save(tiny_state(classes=3), path, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)
        load = lambda **trust: load_model(path, arch="mynets:Net", arch_kwargs={"classes": 3}, pythonpath=[nets],
                                          **trust)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns of any protocol but 2, on stderr, past the one line
            if protocol == 3:  # the safe unpickler reads protocol 3
                assert load().info.format == "state_dict"
                continue
            with pytest.raises(LoadError, match=rf"pickled with protocol {protocol}, .*only with `trust`"):
                load()
            assert load(trust=True).info.format == "state_dict"


def test_mismatching_keys_and_shapes_are_named(tmp_path, nets):
    state = tiny_state(classes=3)
    state["extra.weight"] = torch.zeros(2)
    del state["conv.bias"]
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    with pytest.raises(LoadError) as err:
        load_model(path, arch="mynets:Net", pythonpath=[nets])
    message = str(err.value)
    assert "1 missing (conv.bias)" in message
    assert "1 unexpected (extra.weight)" in message
    assert "fc.weight (3, 6) vs (4, 6)" in message
    assert "`arch_kwargs`" in message and str(path) in message


def test_torchvision_arch_gives_its_input_spec_and_class_names(tmp_path):
    model = torchvision.models.get_model("squeezenet1_1", weights=None)
    path = tmp_path / "sq.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, arch="squeezenet1_1")
    assert loaded.spec_defaults == InputSpec((224, 224), IMAGENET_MEAN, IMAGENET_STD)
    assert len(loaded.class_names) == 1000 and loaded.class_names[0] == "tench"
    with pytest.raises(LoadError, match="did you mean squeezenet1_1"):
        load_model(path, arch="squeezenet11")


def test_full_pickle_needs_trust_and_says_why(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), path)
    with pytest.raises(LoadError) as err:
        load_model(path)
    assert "`trust`" in str(err.value) and "arbitrary code" in str(err.value)
    assert "torch.nn.modules.container.Sequential" in str(err.value)
    loaded = load_model(path, trust=True)
    assert isinstance(loaded.model, nn.Sequential) and loaded.info.format == "pickle"


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_runs_no_code_without_trust(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": _Exploit(str(marker))}, path)
    with pytest.raises(LoadError, match="posix.mkdir|os.mkdir|nt.mkdir"):
        load_model(path)
    assert not marker.exists()
    with path.open("wb") as f:  # a plain pickle, which torch.load cannot read: not unpickled even with trust
        pickle.dump({"state_dict": _Exploit(str(marker))}, f, protocol=2)
    with pytest.raises(LoadError, match="is a plain Python pickle"):
        load_model(path, trust=True)
    assert not marker.exists()


def test_a_trusted_checkpoint_holding_a_module_gives_that_module(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model, "classes": ["a", "b", "c", "d"]}, path)
    loaded = load_model(path, trust=True)
    assert isinstance(loaded.model, nn.Sequential) and loaded.class_names == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"name,label\ncat.png,3\n", "text file"),
        (bytes(range(256)) * 8, "not a PyTorch model file"),
        (b"PK\x03\x04" + b"\x00" * 200, "truncated or damaged archive"),
    ],
    ids=["missing", "empty", "text", "random-bytes", "broken-zip"],
)
def test_files_that_are_not_models_get_their_own_message(tmp_path, content, message):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(LoadError, match=message) as err:
        load_model(path)
    assert str(path) in str(err.value)


def test_a_folder_and_a_list_are_refused(tmp_path):
    with pytest.raises(LoadError, match="is a folder"):
        load_model(tmp_path)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(LoadError, match="holds a list, not a model or a state dict"):
        load_model(tmp_path / "list.pt", trust=True)


def test_truncated_files_are_reported_as_damaged(tmp_path):
    model = nn.Conv2d(3, 4, 3)
    for name, zipped in (("new.pt", True), ("legacy.pt", False)):
        full = tmp_path / f"full-{name}"
        torch.save(model.state_dict(), full, _use_new_zipfile_serialization=zipped)
        data = full.read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(LoadError, match="damaged"):
            load_model(tmp_path / name, trust=True)


def test_a_class_that_cannot_be_imported_names_pythonpath(tmp_path, nets):
    path = tmp_path / "full.pt"
    sys.path.insert(0, str(nets))
    torch.save(__import__("mynets").Net(), path)
    sys.path.remove(str(nets))
    del sys.modules["mynets"]
    with pytest.raises(LoadError, match="`pythonpath`"):
        load_model(path, trust=True)
    assert load_model(path, trust=True, pythonpath=[nets], imports=["mynets"]).info.format == "pickle"
    with pytest.raises(LoadError, match="`imports` nosuchmodule failed"):
        load_model(path, trust=True, imports=["nosuchmodule"])


def test_torchscript_is_refused_with_the_reason_and_what_to_save(tmp_path):
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(nn.Conv2d(3, 4, 3)), path)
    with pytest.raises(LoadError) as err:
        load_model(path)
    message = str(err.value)
    assert "TorchScript" in message and "hooks" in message and "state_dict" in message


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv2(self.pool(self.relu(self.conv1(x))))))


def test_export_program_is_instrumented_like_the_module_it_came_from(tmp_path):
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 16, 16)
    path = tmp_path / "model.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}}), path)
    loaded = load_model(path)
    assert loaded.info.format == "export" and loaded.batch_size is None
    assert loaded.spec_defaults.size == (16, 16)
    index = layer_index(loaded, x[:1])
    eager = index_layers(model, x[:1])
    assert index.select() == eager.select() == ["conv1", "pool", "conv2"]
    assert index["conv1"].type == "Conv2d"
    ours = layer_saliency(loaded.model, x, index.select())
    theirs = layer_saliency(model, x, eager.select())
    for name in theirs:
        torch.testing.assert_close(ours[name], theirs[name])


def test_export_with_a_fixed_batch_of_one_is_analysed_one_image_at_a_time(tmp_path):
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(SmallCNN().eval(), (torch.randn(1, 3, 16, 16),)), path)
    loaded = load_model(path)
    assert loaded.batch_size == 1 and "one image at a time" in loaded.notes[0]


def test_input_spec_resolves_overrides_and_rejects_bad_values():
    model_spec = InputSpec((299, 299), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert input_spec(None) == InputSpec((224, 224), IMAGENET_MEAN, IMAGENET_STD)
    assert input_spec(model_spec, size=[64, 96]) == InputSpec((64, 96), model_spec.mean, model_spec.std)
    assert input_spec(None, mean=[0.1], std=[0.3]) == InputSpec((224, 224), (0.1,), (0.3,))
    with pytest.raises(ValueError, match="`mean` has 1 values and `std` 3"):
        input_spec(None, mean=[0.1])
    with pytest.raises(ValueError, match="`std` must be positive"):
        input_spec(None, std=[1, 0, 1])
    with pytest.raises(ValueError, match="two positive numbers"):
        input_spec(None, size=[0, 5])


def test_dry_run_names_the_size_tried_or_the_channels_expected():
    mlp = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten(), nn.Linear(2 * 32 * 32, 5))
    assert check_input_size(mlp, input_spec(None, size=(32, 32))) == 5
    with pytest.raises(ValueError, match=r"rejects a 3x224x224 input .*`input_size` H W"):
        check_input_size(mlp, input_spec(None))
    with pytest.raises(ValueError, match="expects 3 channel.*`mean` and `std` with 3 value"):
        check_input_size(mlp, input_spec(None, size=(32, 32), mean=[0.5], std=[0.5]))


def test_sidecar_preprocessing_file_gives_spec_and_classes(tmp_path):
    torch.save(nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), tmp_path / "m.pt")
    (tmp_path / "preprocess.json").write_text('{"input_size": [48, 40], "mean": [0.5, 0.5, 0.5], '
                                              '"std": [0.2, 0.2, 0.2], "classes": ["x", "y"]}')
    loaded = load_model(tmp_path / "m.pt", trust=True)
    assert loaded.spec_defaults == InputSpec((48, 40), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert loaded.class_names == ["x", "y"]


def test_full_pickle_and_state_dict_with_arch_give_identical_numbers(tmp_path):
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    torch.save(model, tmp_path / "full.pt")
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (72, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
    common = ["--images", str(images), "--input-size", "64", "64", "--device", "cpu", "--batch-size", "2"]
    parser = build_parser(None)
    full = workspace_from_args(parser.parse_args([str(tmp_path / "full.pt"), "--trust", *common]))
    arch = workspace_from_args(parser.parse_args(
        [str(tmp_path / "weights.pth"), "--arch", "resnet18", "--arch-kwargs", '{"num_classes": 10}', *common]
    ))
    assert full.layers == arch.layers and len(full.layers) > 10
    assert full.spec == arch.spec
    assert full.class_names is arch.class_names is None and not arch.warnings  # ImageNet names: not for 10 classes
    a = analyse(full.model, full.images.batches(2), full.layers, settings=full.settings)
    b = analyse(arch.model, arch.images.batches(2), arch.layers, settings=arch.settings)
    assert a.entropy.shape == (3, len(a.layers))
    assert np.array_equal(a.entropy, b.entropy, equal_nan=True)


def test_no_model_opens_the_demo_on_its_validation_images(monkeypatch):
    from semiotui.engine import demo

    monkeypatch.setattr(demo, "load_demo_model", lambda: demo.DemoNet().eval())  # the weights are not needed here
    ws = workspace_from_args(build_parser(None).parse_args(["--limit", "5", "--device", "cpu", "--target", "label"]))
    assert ws.info.format == "demo" and ws.info.path is None
    assert ws.spec == demo.INPUT_SPEC and ws.class_names == demo.CLASSES
    assert len(ws.images) == 5 and ws.images.labels == [label for _, label in demo.demo_samples("val", 5)]
    assert ws.layers == ws.index.default_selection() and len(ws.layers) >= 6
    assert ws.settings.target == "label" and ws.settings.device == "cpu"


def test_settings_come_from_the_options_and_bad_ones_are_refused(tmp_path):
    torch.save(SmallCNN(), tmp_path / "m.pt")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    parser = build_parser(None)
    base = [str(tmp_path / "m.pt"), "--trust", "--images", str(tmp_path / "a.png"), "--input-size", "16", "16"]
    ws = workspace_from_args(parser.parse_args(
        [*base, "--layers", "conv*", "--method", "layercam", "--native", "--target", "2", "--levels", "64",
         "--output", "0", "--batch-size", "3", "--normalized", "--estimator", "histogram"]
    ))
    assert ws.layers == ["conv1", "conv2"]
    s = ws.settings
    assert (s.method, s.estimator, s.levels, s.upsample, s.normalized, s.target, s.batch_size, s.output) == (
        "layercam", "histogram", 64, False, True, 2, 3, 0)
    for extra, message in [
        (["--target", "3"], "out of range: the model has 3 classes"),
        (["--target", "label"], "needs a label for every image"),
        (["--target", "cat"], "expected predicted, label or a class index"),
        (["--arch-kwargs", "{nope"], "--arch-kwargs is not valid JSON"),
        (["--levels", "1"], "levels must be from 2 to 4096"),
        (["--dataset", f"mnist:{tmp_path}"], "`images` or `dataset`, not both"),
        (["--layers", "conv3"], "no layer named 'conv3'; did you mean 'conv2'"),
    ]:
        with pytest.raises(ValueError, match=message):
            workspace_from_args(parser.parse_args([*base, *extra]))
    (tmp_path / "preprocess.json").write_text('{"input_size": [16, 16], "mean": [0, 0, 0], "std": [1, 1, 1], '
                                              '"classes": ["x", "y"]}')
    ws = workspace_from_args(parser.parse_args(base))
    assert ws.class_names is None and "has 3 classes, not the 2 names" in ws.warnings[-1]
    prune_like = parser.parse_args(base)
    for name in ("layers", "method", "estimator", "levels", "native", "normalized", "target", "batch_size"):
        delattr(prune_like, name)  # a parser without the analysis options
    assert workspace_from_args(prune_like).settings.method == "gradcam"


def test_an_exported_folder_beside_its_model_gets_the_models_class_order(tmp_path):
    torch.save(SmallCNN(), tmp_path / "model.pt")
    (tmp_path / "preprocess.json").write_text('{"input_size": [16, 16], "mean": [0.5, 0.5, 0.5], '
                                              '"std": [0.5, 0.5, 0.5], "classes": ["zeta", "alpha", "mid"]}')
    for name in ("alpha", "zeta"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / name / "1.png")
    ws = workspace_from_args(build_parser(None).parse_args(
        [str(tmp_path / "model.pt"), "--trust", "--images", str(tmp_path), "--target", "label"]
    ))
    assert ws.spec.size == (16, 16) and ws.class_names == ["zeta", "alpha", "mid"]
    assert ws.images.names == [f"{tmp_path.name}/alpha/1.png", f"{tmp_path.name}/zeta/1.png"]
    assert ws.images.labels == [1, 0] and not ws.images.skipped  # model.pt and the JSON are not images of the tree


def test_a_fine_tuned_torchvision_state_dict_is_built_with_its_own_number_of_classes(tmp_path):
    torch.manual_seed(0)
    tuned = torchvision.models.resnet18(num_classes=10)
    torch.save(tuned.state_dict(), tmp_path / "tuned.pth")
    loaded = load_model(tmp_path / "tuned.pth", arch="resnet18")
    assert loaded.model.fc.out_features == 10 and loaded.class_names is None  # not ImageNet's names
    assert loaded.notes == ["built resnet18 with 10 classes, as the classifier in tuned.pth has "
                            "(pass --arch-kwargs '{\"num_classes\": N}' to choose)"]
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(loaded.model.eval()(x), tuned.eval()(x))
    # weights of another architecture are still refused, with the shapes named
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "other.pth")
    with pytest.raises(Exception, match="do not fit `arch` resnet18"):
        load_model(tmp_path / "other.pth", arch="resnet18")
