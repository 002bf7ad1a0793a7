import pytest
import torch
import torch.nn.functional as F
import torchvision
from captum.attr import LayerActivation, LayerGradCam, LayerGradientXActivation
from torch import nn

from semiotui.engine import compute_saliency, index_layers, layer_saliency
from semiotui.engine.analysis import AnalysisSettings
from semiotui.engine.errors import InvalidValue
from semiotui.engine.saliency import METHODS, SALIENCY_METHODS


def _torchvision(arch: str) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, weights=None, num_classes=10).eval()
    # Random weights leave many gradcam maps all zero; a little weight noise in the
    # batch norms keeps the comparison meaningful.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
    return model


@pytest.mark.parametrize("arch", [pytest.param(a, marks=pytest.mark.slow)  # torchvision networks: seconds each
                                  for a in ("vgg11", "resnet18", "mobilenet_v2")])
def test_gradcam_of_every_conv_equals_captum_layergradcam(arch):
    model = _torchvision(arch)
    x = torch.randn(2, 3, 64, 64)
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    maps = layer_saliency(model, x, convs)
    assert list(maps) == convs
    target = model(x).argmax(dim=1)
    modules = dict(model.named_modules())
    nonzero = 0
    for name in convs:
        ref = LayerGradCam(model, modules[name]).attribute(x, target=target, relu_attributions=True)
        ref = ref.detach()[:, 0]
        scale = ref.abs().max().clamp(min=1e-12)
        assert maps[name].shape == ref.shape, name
        assert float((maps[name] - ref).abs().max() / scale) <= 1e-4, name
        nonzero += bool(ref.abs().max() > 0)
    assert nonzero >= len(convs) // 2  # the comparison is not between empty maps


def _captum_grads_and_acts(model, layer, x, target):
    grads = LayerGradientXActivation(model, layer, multiply_by_inputs=False).attribute(x, target=target)
    acts = LayerActivation(model, layer).attribute(x)
    return grads.detach(), acts.detach()


@pytest.mark.parametrize(
    "method, combine",
    [
        ("layercam", lambda g, a: (torch.relu(g) * a).sum(1)),
        ("gradxact", lambda g, a: (g * a).sum(1).abs()),
        ("activation", lambda g, a: a.abs().mean(1)),
    ],
)
def test_other_methods_match_their_definition_on_captum_gradients(method, combine):
    model = _torchvision("resnet18")
    x = torch.randn(3, 3, 48, 48)
    target = torch.tensor([1, 4, 7])
    layers = ["conv1", "layer2.0.conv2", "layer3.1.conv1"]
    maps = layer_saliency(model, x, layers, method=method, target=target)
    modules = dict(model.named_modules())
    for name in layers:
        g, a = _captum_grads_and_acts(model, modules[name], x, target)
        expected = combine(g, a)
        assert torch.allclose(maps[name], expected, rtol=1e-4, atol=1e-6 * expected.abs().max()), name


def test_each_registered_method_is_a_choice_and_only_the_activation_map_runs_without_gradients():
    assert METHODS == tuple(SALIENCY_METHODS) == ("gradcam", "layercam", "gradxact", "activation")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    grad_enabled = []
    model[0].register_forward_hook(lambda module, args, out: grad_enabled.append(torch.is_grad_enabled()))
    x = torch.randn(2, 3, 10, 10)
    for method in METHODS:
        grad_enabled.clear()
        AnalysisSettings(method=method).check()
        assert layer_saliency(model, x, ["0"], method=method)["0"].shape == (2, 8, 8)
        assert grad_enabled == [method != "activation"], method
    with pytest.raises(InvalidValue, match="choose one of gradcam, layercam, gradxact, activation"):
        layer_saliency(model, x, ["0"], method="lime")
    with pytest.raises(InvalidValue, match="choose one of gradcam, layercam, gradxact, activation"):
        AnalysisSettings(method="lime").check()


class Twice(nn.Module):
    """A block that reuses one conv and one in-place ReLU, with a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.shared = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.relu(self.stem(x))
        y = self.relu(self.shared(x))
        y = self.shared(y) + x
        return self.fc(self.relu(y).mean(dim=(2, 3)))


def _reference_twice(model: Twice, x, target):
    """Maps of both calls of `shared`, computed by hand with explicit tensors."""
    x = x.clone()
    s = torch.relu(model.stem(x))
    a1 = model.shared(s)
    a2 = model.shared(torch.relu(a1))
    out = model.fc(torch.relu(a2 + s).mean(dim=(2, 3)))
    score = out.gather(1, target[:, None]).sum()
    g1, g2 = torch.autograd.grad(score, [a1, a2])
    cam = lambda g, a: torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))  # noqa: E731
    return cam(g1, a1).detach(), cam(g2, a2).detach()


def test_module_called_twice_gives_one_map_per_call():
    model = Twice().eval()
    x = torch.randn(2, 3, 12, 12)
    target = torch.tensor([0, 2])
    maps = layer_saliency(model, x, ["shared"], target=target)
    assert list(maps) == ["shared#1", "shared#2"]
    ref1, ref2 = _reference_twice(model, x, target)
    assert torch.allclose(maps["shared#1"], ref1, atol=1e-6)
    assert torch.allclose(maps["shared#2"], ref2, atol=1e-6)
    only_second = layer_saliency(model, x, ["shared#2"], target=target)
    assert list(only_second) == ["shared#2"]
    assert torch.equal(only_second["shared#2"], maps["shared#2"])
    assert index_layers(model, x[:1])["shared"].map_names == ["shared#1", "shared#2"]


def test_inplace_activation_after_a_layer_does_not_leak_into_its_map():
    torch.manual_seed(3)
    inplace = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU6(inplace=True), nn.Conv2d(6, 6, 3),
                            nn.Hardswish(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    copy = nn.Sequential(*[type(m)() if isinstance(m, (nn.ReLU6, nn.Hardswish)) else m for m in inplace])
    x = torch.randn(2, 3, 10, 10)
    for method in ("gradcam", "activation", "gradxact"):
        got = layer_saliency(inplace, x, ["0", "2"], method=method)
        want = layer_saliency(copy, x, ["0", "2"], method=method)
        for name in got:
            assert torch.equal(got[name], want[name]), (method, name)
    # the conv's activation map still has negative pre-activations averaged in
    acts = layer_saliency(inplace, -x.abs(), ["0"], method="activation")["0"]
    assert float(acts.min()) > 0


def test_targets_predicted_int_and_per_image():
    model = _torchvision("resnet18")
    x = torch.randn(3, 3, 32, 32)
    predicted = compute_saliency(model, x, ["layer1.0.conv1"])
    assert torch.equal(predicted.targets, predicted.logits.argmax(1))
    fixed = compute_saliency(model, x, ["layer1.0.conv1"], target=5)
    assert fixed.targets.tolist() == [5, 5, 5]
    each = compute_saliency(model, x, ["layer1.0.conv1"], target=[1, 2, 3])
    assert each.targets.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="out of range"):
        layer_saliency(model, x, ["conv1"], target=10)
    with pytest.raises(ValueError, match="2 targets for 3 images"):
        layer_saliency(model, x, ["conv1"], target=[1, 2])


def test_upsampled_maps_are_bilinear_resizes_of_native_ones():
    model = _torchvision("vgg11")
    x = torch.randn(2, 3, 40, 56)
    native = layer_saliency(model, x, ["features.3", "features.8"])
    big = layer_saliency(model, x, ["features.3", "features.8"], upsample=True)
    for name, m in native.items():
        assert big[name].shape == (2, 40, 56)
        expected = F.interpolate(m[:, None], size=(40, 56), mode="bilinear", align_corners=False)[:, 0]
        assert torch.allclose(big[name], expected)


def test_no_parameter_gradients_and_model_state_restored():
    model = _torchvision("resnet18")
    model.train()
    model.layer1.requires_grad_(False)  # a mixed state must come back as it was
    model.fc.eval()
    flags = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    layer_saliency(model, torch.randn(2, 3, 32, 32), ["conv1", "layer4.1.conv2"])
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert [m.training for m in model.modules()] == modes


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)
        self.later = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        x = self.later(self.conv(x))
        raise RuntimeError("boom")


def test_hooks_are_removed_and_state_restored_when_the_forward_raises():
    model = Exploding().train()
    model.later.weight.requires_grad_(False)
    with pytest.raises(RuntimeError, match="boom"):
        layer_saliency(model, torch.randn(1, 3, 8, 8), ["conv", "later"])
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert model.training and model.conv.training
    assert model.conv.weight.requires_grad and not model.later.weight.requires_grad


def test_bad_layer_requests_are_explained():
    model = _torchvision("resnet18")
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="no layer named 'layer9'"):
        layer_saliency(model, x, ["layer9"])
    with pytest.raises(ValueError, match="'fc' returns .* no spatial map"):
        layer_saliency(model, x, ["fc"])
    with pytest.raises(ValueError, match="called 1 times, not 2"):
        layer_saliency(model, x, ["conv1#2"])
    with pytest.raises(ValueError, match="method"):
        layer_saliency(model, x, ["conv1"], method="lime")


def test_modules_can_be_passed_instead_of_names():
    model = _torchvision("vgg11")
    x = torch.randn(1, 3, 32, 32)
    by_module = layer_saliency(model, x, [model.features[0], model.features[3]])
    by_name = layer_saliency(model, x, ["features.0", "features.3"])
    assert list(by_module) == list(by_name)
    for name in by_name:
        assert torch.equal(by_module[name], by_name[name])


def test_several_outputs_need_a_choice():
    class TwoHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(4, 5)

        def forward(self, x):
            f = self.conv(x).mean(dim=(2, 3))
            return self.a(f), self.b(f)

    model = TwoHeads()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"2 outputs: 0 \(2, 3\), 1 \(2, 5\); choose one with `output` N"):
        layer_saliency(model, x, ["conv"])
    second = compute_saliency(model, x, ["conv"], output=1)
    assert second.logits.shape == (2, 5)


class Softmaxed(nn.Module):
    """A model whose class output is already a probability distribution (or its logarithm)."""

    def __init__(self, inner: nn.Module, log: bool = False) -> None:
        super().__init__()
        self.inner, self.log = inner, log

    def forward(self, x):
        z = self.inner(x)
        return torch.log_softmax(z, dim=1) if self.log else torch.softmax(z, dim=1)


@pytest.mark.parametrize("log", [False, True])
def test_an_output_of_probabilities_is_explained_by_its_log_with_the_models_own_confidence(tiny_net, log):
    x = torch.randn(4, 3, 16, 16)
    plain = compute_saliency(tiny_net, x, ["conv2"])
    wrapped = Softmaxed(tiny_net, log=log).eval()
    got = compute_saliency(wrapped, x, ["inner.conv2"])
    assert got.scores == ("log-probabilities" if log else "probabilities")
    assert torch.equal(got.targets, plain.targets)  # the same classes are explained
    assert torch.allclose(got.probabilities, torch.softmax(plain.logits, 1), atol=1e-6)  # as the model gives them
    # gradients of log p (not of p, and not of a second softmax): Captum on log_softmax of the logits
    reference = LayerGradCam(lambda inp: torch.log_softmax(tiny_net(inp), 1), tiny_net.conv2).attribute(
        x, target=plain.targets, relu_attributions=True)[:, 0]
    assert torch.allclose(got.maps["inner.conv2"], reference, atol=1e-5)
    assert not torch.allclose(got.maps["inner.conv2"], plain.maps["conv2"], atol=1e-5)


def test_an_output_that_is_not_class_scores_is_refused():
    class Boxes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            f = self.conv(x).mean(dim=(2, 3))
            return f[:, :1], f

    model = Boxes()
    with pytest.raises(ValueError, match=r"output is \(2, 1\); expected class scores \(batch, classes\) with at least 2"):
        compute_saliency(model, torch.randn(2, 3, 8, 8), ["conv"], output=0)
