"""Steps follow the data flow: a layer is compared with the layer whose output it consumes, along the main path."""

import torch
import torchvision
from torch import nn

from semiotui.engine import AnalysisSettings, analyse, index_layers
from semiotui.engine.flow import Flow
from semiotui.engine.saliency import compute_saliency


def _flow(model: nn.Module, size: int = 64) -> Flow:
    x = torch.randn(1, 3, size, size)
    layers = index_layers(model, x).select()
    return compute_saliency(model, x, layers, trace=True).flow


def test_resnet_steps_never_join_a_residual_branch_to_its_shortcut():
    flow = _flow(torchvision.models.resnet18().eval())
    steps = [(flow.layers[p], flow.layers[i]) for i, p in enumerate(flow.parents) if p is not None]
    assert steps[:3] == [("conv1", "maxpool"), ("maxpool", "layer1.0.conv1"), ("layer1.0.conv1", "layer1.0.conv2")]
    for before, after in steps:
        assert "downsample" not in before and "downsample" not in after
        block_a, block_b = before.rsplit(".", 1)[0], after.rsplit(".", 1)[0]
        if block_a == block_b and block_a.startswith("layer"):  # within a block: conv1 -> conv2 only
            assert (before.endswith("conv1"), after.endswith("conv2")) == (True, True)
    assert flow.branches == ["layer2.0.downsample.0", "layer3.0.downsample.0", "layer4.0.downsample.0"]
    # the shortcut consumes what the previous block returned, never the residual branch beside it
    shortcut = flow.layers.index("layer4.0.downsample.0")
    assert "layer4.0.conv1" not in [flow.layers[j] for j in flow.inputs[shortcut]]


def test_a_plain_sequence_keeps_its_forward_order(tiny_net):
    flow = _flow(tiny_net, 16)
    assert flow == Flow.chain(flow.layers)


class TwoBranches(nn.Module):
    """A stem, two parallel branches of different depth joined by a sum, and a head conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.short = nn.Conv2d(4, 4, 1)
        self.long1 = nn.Conv2d(4, 4, 3, padding=1)
        self.long2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.stem(x))
        y = self.short(s) + self.long2(torch.relu(self.long1(s)))
        return self.fc(self.head(y).mean((2, 3)))


def test_branches_step_along_the_longest_path_and_the_other_branch_has_no_step():
    flow = _flow(TwoBranches().eval(), 16)
    assert flow.layers == ["stem", "short", "long1", "long2", "head"]
    named = {flow.layers[i]: (None if p is None else flow.layers[p]) for i, p in enumerate(flow.parents)}
    assert named == {"stem": None, "short": None, "long1": "stem", "long2": "long1", "head": "long2"}
    assert flow.main == [True, False, True, True, True]
    assert flow.inputs[flow.layers.index("head")] == (1, 3)


def test_the_analysis_keeps_the_flow_and_its_steps_follow_it():
    model = TwoBranches().eval()
    x = torch.randn(12, 3, 16, 16)
    result = analyse(model, [x], ["stem", "short", "long1", "long2", "head"], AnalysisSettings(device="cpu"))
    steps = result.superization()
    assert result.flow.parents == [None, None, 0, 2, 3]
    h = result.entropy
    assert torch.isnan(torch.tensor(steps.delta[1])) and abs(steps.delta[4] - (h[:, 3] - h[:, 4]).mean()) < 1e-12
