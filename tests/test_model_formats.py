"""The model files people have beside torch.save's: safetensors (one file or shards) with --arch (torchvision or
timm:NAME), training frameworks' checkpoints, ONNX and Hugging Face folders. Each gives a report
whose entropies are those of the same model analysed directly, opened without --trust."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from helpers import TinyNet, interface_stub, only_error_line, write_tiny_inputs
from semiotui.engine import analyse
from semiotui.engine.data import ImageSource
from semiotui.engine.layers import index_layers
from semiotui.engine.loading import LoadError, load_model
from semiotui.engine.saved import open_report
from semiotui.tui.cli import main

pytestmark = pytest.mark.slow  # builds timm, ONNX and Hugging Face models


def extra(module: str, name: str) -> pytest.MarkDecorator:
    """Skip where the optional extra that provides `module` is not installed (CI installs every extra)."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"needs {module}: pip install 'semiotui[{name}]'")


needs_timm, needs_onnx, needs_hf = extra("timm", "timm"), extra("onnx2torch", "onnx"), extra("transformers", "hf")


@pytest.fixture(autouse=True)
def _one_thread():
    """Entropies compared to 1e-6 need runs that repeat bit for bit: with two threads, PyTorch's CPU backward of a
    one-image batch varies in the last bits of a map now and then (about one run in ten here), enough to move a
    pixel across a grey level and an entropy by 0.001 bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    (tmp_path / "inputs").mkdir()
    return write_tiny_inputs(tmp_path / "inputs", images=3, size=20, classes=2)


@pytest.fixture
def report(capsys: pytest.CaptureFixture) -> Callable[..., str]:
    """Run `semiotui report` on a model (with --trust only where a test passes it) and return what it printed."""

    def run(model: Path, inputs: Path, out: Path, *options: str, size: int = 32) -> str:
        status = main(["report", str(model), *options, "--images", str(inputs / "images"), "--input-size",
                       str(size), str(size), "--device", "cpu", "--no-control", "--batch-size", "2", "-o", str(out)])
        printed = capsys.readouterr().err
        assert status == 0, printed
        return printed

    return run


def assert_same_entropies(out: Path, inputs: Path, model: nn.Module, layers: list[str] | None = None) -> None:
    """The report in `out` holds the entropies `model` (loaded directly) gives on the same images and layers."""
    saved = open_report(out)
    source = ImageSource.from_paths([inputs / "images"], saved.spec)
    direct = analyse(model.eval(), source.batches(2), layers or saved.layers, settings=saved.settings)
    assert saved.result.entropy.shape == direct.entropy.shape and len(saved.layers) >= 2
    np.testing.assert_allclose(saved.result.entropy, direct.entropy, rtol=0, atol=1e-6)


def resnet18(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=classes).eval()


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return path


# --- safetensors ---------------------------------------------------------------------------------------------


def test_safetensors_weights_are_recognised_by_their_header_whatever_the_name(inputs, tmp_path, report):
    model = resnet18()
    path = save_safetensors(model.state_dict(), tmp_path / "weights.bin")  # no telling suffix
    notes = report(path, inputs, tmp_path / "out", "--arch", "resnet18")
    assert "built resnet18 with 3 classes" in notes
    assert open_report(tmp_path / "out").info.format == "safetensors"
    assert_same_entropies(tmp_path / "out", inputs, model)


def test_a_sharded_safetensors_checkpoint_opens_from_its_index_or_any_shard(inputs, tmp_path, report):
    model = resnet18()
    state = model.state_dict()
    names = list(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        save_safetensors({k: state[k] for k in keys}, tmp_path / shard)
        weight_map.update(dict.fromkeys(keys, shard))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    report(index, inputs, tmp_path / "out", "--arch", "resnet18")
    assert_same_entropies(tmp_path / "out", inputs, model)
    loaded = load_model(tmp_path / "model-00002-of-00002.safetensors", arch="resnet18")
    assert "one shard: read every shard model.safetensors.index.json lists" in loaded.notes[0]
    assert all(torch.equal(v, state[k]) for k, v in loaded.model.state_dict().items())


def test_a_shard_outside_the_index_folder_or_a_missing_one_is_refused(tmp_path):
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"fc.weight": "../elsewhere.safetensors"}}))
    with pytest.raises(LoadError, match="not a file name beside it"):
        load_model(index, arch="resnet18")
    index.write_text(json.dumps({"weight_map": {"fc.weight": "gone.safetensors"}}))
    with pytest.raises(LoadError, match="lists the shard gone.safetensors, which is not beside it"):
        load_model(index, arch="resnet18")


def test_a_damaged_safetensors_file_is_named_so(tmp_path):
    path = save_safetensors(resnet18().state_dict(), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(LoadError, match="damaged safetensors file"):
        load_model(path, arch="resnet18")


# --- timm ----------------------------------------------------------------------------------------------------


@needs_timm
@pytest.mark.parametrize("name", ["resnet18", "convnext_atto"])
def test_a_timm_model_from_safetensors_matches_the_model_itself(name, inputs, tmp_path, report):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=4).eval()
    path = save_safetensors(model.state_dict(), tmp_path / "model.safetensors")
    notes = report(path, inputs, tmp_path / "out", "--arch", f"timm:{name}")
    assert f"built timm:{name} with 4 classes" in notes
    assert "input size 224x224, mean and std from timm's pretrained config" in notes
    saved = open_report(tmp_path / "out")
    config = timm.data.resolve_model_data_config(model)
    assert saved.spec.mean == tuple(config["mean"]) and saved.spec.std == tuple(config["std"])
    assert_same_entropies(tmp_path / "out", inputs, model)


@needs_timm
def test_a_name_timm_does_not_know_gets_its_close_names(tmp_path):
    torch.save(resnet18().state_dict(), tmp_path / "w.pt")
    with pytest.raises(LoadError, match="timm:resnet81 is not a timm model name; did you mean .*resnet18"):
        load_model(tmp_path / "w.pt", arch="timm:resnet81")
    with pytest.raises(LoadError, match="not a timm model name"):  # would read the hub
        load_model(tmp_path / "w.pt", arch="timm:hf-hub:timm/resnet18.a1_in1k")


def test_a_missing_extra_is_named_with_the_command_that_installs_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # what an import of a package that is not installed meets
    torch.save(resnet18().state_dict(), tmp_path / "w.pt")
    with pytest.raises(LoadError, match=r"needs the optional package timm, .*pip install 'semiotui\[timm\]'"):
        load_model(tmp_path / "w.pt", arch="timm:resnet18")


# --- training frameworks' checkpoints ------------------------------------------------------------------------


def lightning(state: dict) -> dict:
    """A checkpoint as PyTorch Lightning writes it for a LightningModule holding the network as `self.model`."""
    return {"epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 3}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.4)}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}],
            "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": {"lr": 0.1, "arch": "resnet18"}}


def timm_train(state: dict, ema: dict) -> dict:
    """A checkpoint as timm's train script writes it: its options (an argparse.Namespace) and an EMA copy."""
    return {"epoch": 9, "arch": "resnet18", "state_dict": state, "state_dict_ema": ema, "version": 2,
            "optimizer": {"state": {}, "param_groups": []}, "metric": 71.5,
            "args": argparse.Namespace(model="resnet18", lr=0.05, epochs=10, amp=True)}


def test_a_lightning_checkpoint_has_its_prefix_found_and_said(inputs, tmp_path, report):
    model = resnet18()
    torch.save(lightning(model.state_dict()), tmp_path / "last.ckpt")
    notes = report(tmp_path / "last.ckpt", inputs, tmp_path / "out", "--arch", "resnet18")
    assert "stripped the prefix 'model.' from the weight names in last.ckpt" in notes
    assert_same_entropies(tmp_path / "out", inputs, model)


@pytest.mark.parametrize("wrap", ["module.", "_orig_mod."])
def test_data_parallel_and_compiled_prefixes_are_stripped_and_named(wrap, inputs, tmp_path, report):
    model = resnet18()
    wrapped = nn.DataParallel(model) if wrap == "module." else torch.compile(model)  # compiled lazily: no compile
    assert next(iter(wrapped.state_dict())).startswith(wrap)
    torch.save({"model_state_dict": wrapped.state_dict(), "epoch": 1}, tmp_path / "ckpt.pth")
    notes = report(tmp_path / "ckpt.pth", inputs, tmp_path / "out", "--arch", "resnet18")
    who = "DataParallel/DDP" if wrap == "module." else "torch.compile"
    assert f"stripped the prefix '{wrap}' from the weight names in ckpt.pth ({who}" in notes
    assert_same_entropies(tmp_path / "out", inputs, model)


@pytest.mark.parametrize("choice", ["ema", "trained"])
def test_a_timm_train_checkpoint_gives_its_ema_weights_unless_told(choice, inputs, tmp_path, report):
    trained, averaged = resnet18(), resnet18()
    torch.manual_seed(1)
    averaged.load_state_dict({k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                              for k, v in trained.state_dict().items()})
    ema = {f"module.{k}": v for k, v in averaged.state_dict().items()}  # the EMA wrapper's own prefix
    torch.save(timm_train(trained.state_dict(), ema), tmp_path / "model_best.pth.tar")
    options = ["--arch", "resnet18"] + (["--no-ema"] if choice == "trained" else [])
    notes = report(tmp_path / "model_best.pth.tar", inputs, tmp_path / "out", *options)
    said = {"ema": "using the EMA weights ('state_dict_ema'); pass --no-ema",
            "trained": "using the trained weights ('state_dict'), not the EMA ones"}[choice]
    assert said in notes
    assert_same_entropies(tmp_path / "out", inputs, averaged if choice == "ema" else trained)


class Wrapped(nn.Module):
    """A user's model whose every weight sits under one attribute, as a training wrapper's would."""

    def __init__(self) -> None:
        super().__init__()
        self.net = TinyNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_a_prefix_that_is_the_models_own_is_kept(tmp_path):
    model = Wrapped()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pt")
    loaded = load_model(tmp_path / "w.pt", arch="test_model_formats:Wrapped")
    assert not loaded.notes  # nothing stripped: the names are the model's own
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.model.state_dict().items())


def test_another_mismatch_keeps_the_precise_message(tmp_path):
    state = {f"model.{k}": v for k, v in resnet18().state_dict().items() if not k.startswith("fc.")}
    torch.save({"state_dict": state}, tmp_path / "last.ckpt")
    with pytest.raises(LoadError, match=r"do not fit `arch` resnet18: 2 missing \(fc.weight, fc.bias\)"):
        load_model(tmp_path / "last.ckpt", arch="resnet18")


# --- ONNX ----------------------------------------------------------------------------------------------------


def export_onnx(model: nn.Module, path: Path, size: int, **options: object) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notes
        torch.onnx.export(model, (torch.randn(1, 3, size, size),), path, dynamo=False, input_names=["input"],
                          dynamic_axes={"input": {0: "batch"}}, **options)
    return path


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv2(self.pool(self.conv1(x).relu())).relu())


@needs_onnx
def test_an_onnx_small_cnn_is_named_as_in_its_graph_and_sized_from_it(inputs, tmp_path, report):
    torch.manual_seed(0)
    model = SmallCNN().eval()
    path = export_onnx(model, tmp_path / "small.onnx", 24)
    notes = report(path, inputs, tmp_path / "out", size=24)
    saved = open_report(tmp_path / "out")
    assert saved.info.format == "onnx" and saved.spec.size == (24, 24)
    assert saved.layers[:3] == ["conv1/Conv", "pool/MaxPool", "conv2/Conv"]
    assert "input (B, C, H, W) read from the graph" in notes
    assert_same_entropies(tmp_path / "out", inputs, model, ["conv1", "pool", "conv2"])
    assert load_model(path).spec_defaults.size == (24, 24)  # the graph's own size, without --input-size


@needs_onnx
def test_an_onnx_resnet18_matches_the_model_it_was_exported_from(inputs, tmp_path, report):
    model = resnet18()
    path = export_onnx(model, tmp_path / "r18.onnx", 32, do_constant_folding=False)  # batch norms kept apart
    report(path, inputs, tmp_path / "out", "--layers", "*/Conv")
    convs = [info.name for info in index_layers(model, torch.zeros(1, 3, 32, 32))
             if info.type == "Conv2d" and info.spatial]  # layer4's are 1x1 at this size
    assert len(open_report(tmp_path / "out").layers) == len(convs) == 15
    assert_same_entropies(tmp_path / "out", inputs, model, convs)


@needs_onnx
def test_an_onnx_export_with_batch_norms_folded_and_channels_last_opens(tmp_path):
    class ChannelsLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = resnet18()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.permute(0, 3, 1, 2))

    model = ChannelsLast().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 32, 32, 3),), tmp_path / "nhwc.onnx", dynamo=False)
    loaded = load_model(tmp_path / "nhwc.onnx")
    assert loaded.spec_defaults.size == (32, 32) and loaded.batch_size == 1
    assert "channels last (B, H, W, C), given channels first" in loaded.notes[0]
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded.model(x), model(x.permute(0, 2, 3, 1)), atol=1e-4, rtol=1e-4)


@needs_onnx
def test_an_onnx_operator_the_converter_lacks_is_refused_in_one_sentence(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("DFT", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fft.onnx")
    with pytest.raises(LoadError, match=r"uses ONNX operators onnx2torch cannot convert: DFT \(opset 17\)"):
        load_model(tmp_path / "fft.onnx")


# --- Hugging Face folders ------------------------------------------------------------------------------------


@needs_hf
def test_a_hugging_face_resnet_folder_gives_its_labels_preprocessing_and_logits(inputs, tmp_path, report):
    from transformers import ConvNextImageProcessor, ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    labels = {0: "cat", 1: "dog", 2: "fox"}
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                          num_labels=3, id2label=labels, label2id={v: k for k, v in labels.items()})
    model = ResNetForImageClassification(config).eval()
    folder = tmp_path / "hf-resnet"
    model.save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 40}, crop_pct=1.0, image_mean=[0.5, 0.4, 0.3],
                           image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    notes = report(folder, inputs, tmp_path / "out", size=40)
    assert "class names from config.json's id2label" in notes
    saved = open_report(tmp_path / "out")
    assert saved.info.format == "hf" and saved.class_names == ["cat", "dog", "fox"]
    assert saved.spec.mean == (0.5, 0.4, 0.3) and saved.spec.std == (0.2, 0.25, 0.3)
    assert load_model(folder).spec_defaults.size == (40, 40)
    assert_same_entropies(tmp_path / "out", inputs, model)


@needs_hf
def test_a_hugging_face_folder_is_read_only_from_safetensors_and_never_runs_its_code(tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {
        "AutoModelForImageClassification": "modeling_evil.EvilModel"}}))
    (folder / "modeling_evil.py").write_text(f"open({str(tmp_path / 'marker')!r}, 'w').close()\n")
    with pytest.raises(LoadError, match="holds no model.safetensors"):
        load_model(folder)
    save_safetensors({"w": torch.zeros(1)}, folder / "model.safetensors")
    with pytest.raises(LoadError, match="never a folder's code"):
        load_model(folder)
    assert not (tmp_path / "marker").exists()


# --- the interface -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["safetensors", "lightning",
                                  pytest.param("onnx", marks=needs_onnx), pytest.param("hf", marks=needs_hf)])
def test_each_format_opens_in_the_interface(kind, inputs, tmp_path, monkeypatch):
    from semiotui.tui import app

    opened = []
    monkeypatch.setattr(app, "run_app", interface_stub(opened))
    model = resnet18()
    options = ["--arch", "resnet18"]
    if kind == "safetensors":
        path = save_safetensors(model.state_dict(), tmp_path / "m.safetensors")
    elif kind == "lightning":
        path = tmp_path / "last.ckpt"
        torch.save(lightning(model.state_dict()), path)
    elif kind == "onnx":
        path, options = export_onnx(model, tmp_path / "m.onnx", 32), []
    else:
        from transformers import ResNetConfig, ResNetForImageClassification

        path, options = tmp_path / "hf", []
        ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1],
                                                  num_labels=2)).save_pretrained(path)
    status = main([str(path), *options, "--images", str(inputs / "images"), "--input-size", "32", "32",
                   "--device", "cpu"])
    assert status == 0 and len(opened) == 1 and opened[0][0].layers


@needs_timm
def test_a_bad_format_fails_on_one_line(tmp_path, capsys):
    torch.save({"state_dict": {"model.x": torch.zeros(2)}}, tmp_path / "last.ckpt")
    assert main([str(tmp_path / "last.ckpt"), "--arch", "timm:nosuchnet", "--images", str(tmp_path)]) == 1
    assert "timm:nosuchnet is not a timm model name" in only_error_line(capsys.readouterr().err)
