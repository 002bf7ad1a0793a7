import pytest
import torch
import torchvision
from torch import nn

from semiotui.engine import index_layers


def test_index_follows_forward_order_not_definition_order():
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.last = nn.Linear(4, 2)
            self.first = nn.Conv2d(3, 4, 3)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            return self.last(self.pool(self.first(x)).flatten(1))

    index = index_layers(Backwards(), torch.randn(1, 3, 8, 8))
    assert [i.name for i in index] == ["first", "pool", "last"]
    first = index["first"]
    assert (first.type, first.output_shape, first.parameters, first.spatial) == ("Conv2d", (4, 6, 6), 112, True)
    # a 1x1 output has no spatial map; a 2-D output neither
    assert not index["pool"].spatial and not index["last"].spatial
    assert index.default_selection() == ["first"]


def test_resnet_index_has_containers_reuse_and_default_selection():
    model = torchvision.models.resnet18(num_classes=10)
    index = index_layers(model, torch.randn(1, 3, 64, 64))
    block = index["layer1.0"]
    assert block.type == "BasicBlock" and not block.leaf and block.depth == 2
    assert block.parameters == sum(p.numel() for p in model.layer1[0].parameters())
    assert index["layer1.0.relu"].calls == 2
    assert index["layer1.0.relu"].map_names == ["layer1.0.relu#1", "layer1.0.relu#2"]
    default = index.default_selection()
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert default == ["conv1", "maxpool"] + [c for c in convs if c != "conv1"]
    assert index.map_names(["layer1.0.relu", "conv1"]) == ["conv1", "layer1.0.relu#1", "layer1.0.relu#2"]
    assert index.map_names(["layer1.0.relu", "layer1.0.conv2"]) == ["layer1.0.relu#1", "layer1.0.conv2", "layer1.0.relu#2"]


def test_select_by_names_and_globs_in_forward_order():
    model = torchvision.models.vgg11(num_classes=10)
    index = index_layers(model, torch.randn(1, 3, 32, 32))
    assert index.select(["features.3", "features.0"]) == ["features.0", "features.3"]
    picked = index.select(["features.1*"])
    assert picked == ["features.1"] + [f"features.{i}" for i in range(10, 20)]  # 20 is 1x1 at 32 px
    assert "classifier.0" not in index.select(["*"])  # globs keep only layers with a map
    with pytest.raises(ValueError, match="did you mean 'features.3'"):
        index.select(["featurse.3"])
    with pytest.raises(ValueError, match="'classifier.0' .* has no spatial map"):
        index.select(["classifier.0"])
    with pytest.raises(ValueError, match="matches 'head.*'"):
        index.select(["head.*"])


def test_model_without_spatial_layer_is_refused():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    index = index_layers(mlp, torch.randn(1, 3, 2, 2))
    with pytest.raises(ValueError, match="no convolution or pooling layer with a spatial output"):
        index.select()


def test_indexing_leaves_no_hooks_and_keeps_training_mode():
    model = torchvision.models.mobilenet_v2(num_classes=10).train()
    index_layers(model, torch.randn(1, 3, 32, 32))
    assert model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
