"""ONNX models, converted to a PyTorch module by onnx2torch (the `onnx` extra).

An ONNX file is a graph of standard operators and their weights: it holds no
code, and onnx2torch builds each node from PyTorch's own modules. Each module is
named as its node is in the graph (the exporter's `/layer1/layer1.0/conv1/Conv`
becomes `layer1/layer1.0/conv1/Conv`), so the maps carry the graph's names. The
input's size and layout (channels first or last) are read from the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import fx, nn

from .errors import LoadError, one_line
from .extras import require

# ModelProto's fields, as their first byte (field number and wire type) reads: producer_name, producer_version,
# domain, model_version, doc_string, graph, opset_import, metadata_props.
_MODEL_FIELDS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}
_CHANNELS = (1, 3)  # what an image input has: grey or colour


@dataclass
class OnnxModel:
    """A converted graph and what its input says: (H, W) and batch where fixed (None: any), channels, layout."""

    model: nn.Module
    size: tuple[int, int] | None
    channels: int
    batch: int | None
    channels_last: bool


def looks_like_onnx(head: bytes) -> bool:
    """Whether a file's first bytes are an ONNX ModelProto's: its ir_version (field 1, a small number), then
    another of its fields. Every exporter writes ir_version first."""
    if len(head) < 3 or head[0] != 0x08:
        return False
    version, shift, i = 0, 0, 1
    while i < len(head) and i < 10:
        version |= (head[i] & 0x7F) << shift
        shift += 7
        i += 1
        if not head[i - 1] & 0x80:
            break
    return 1 <= version <= 64 and i < len(head) and head[i] in _MODEL_FIELDS


def load(path: Path) -> OnnxModel:
    """The PyTorch module of the ONNX model in `path`; LoadError for a graph it cannot be."""
    onnx = require("onnx", "onnx", f"{path.name}, an ONNX model,")
    onnx2torch = require("onnx2torch", "onnx", f"{path.name}, an ONNX model,")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf reports damage in many ways
        raise LoadError(f"{path} is a damaged ONNX file ({one_line(exc, short=True)}); copy or export it again") \
            from exc
    graph = proto.graph
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]  # old exporters list the weights as inputs too
    dims = [_dims(i) for i in inputs]
    if len(inputs) != 1 or dims[0] is None or len(dims[0]) != 4:
        raise LoadError(f"{path} takes {len(inputs)} input(s) of shape "
                        f"{', '.join(str(d) for d in dims)}; semiotui needs one image batch (B, C, H, W)")
    batch, *rest = dims[0]
    channels_last = rest[0] not in _CHANNELS and rest[2] in _CHANNELS
    channels, h, w = (rest[2], rest[0], rest[1]) if channels_last else rest
    _fold_identities(proto)
    unsupported = _unsupported(proto)
    if unsupported:
        raise LoadError(f"{path} uses ONNX operators onnx2torch cannot convert: {', '.join(unsupported)}; export "
                        "the model again without them (an older opset_version), or save it with torch.export")
    try:
        model = onnx2torch.convert(proto)
    except Exception as exc:  # a node the converter has but cannot build with these attributes
        raise LoadError(f"{path} could not be converted to PyTorch ({one_line(exc, short=True)}); export the model "
                        "again with another opset_version, or save it with torch.export") from exc
    if channels_last:
        _take_channels_first(model)
    size = (h, w) if isinstance(h, int) and isinstance(w, int) else None
    return OnnxModel(model, size, channels if isinstance(channels, int) else 3, batch, channels_last)


def _dims(value: object) -> list[int | None] | None:
    """The dimensions of a graph input (None where symbolic), or None where it is not a tensor."""
    if not value.type.HasField("tensor_type"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _fold_identities(proto: object) -> None:
    """Give the weights that Identity nodes only rename their new names, and drop those nodes.

    PyTorch's exporter shares equal weights (the zero biases of several convolutions) through Identity
    nodes, where onnx2torch takes a convolution's weights only from the graph's initializers.
    """
    graph = proto.graph
    weights = {t.name: t for t in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in weights and node.output[0] not in weights:
            copy = graph.initializer.add()
            copy.CopyFrom(weights[node.input[0]])
            copy.name = node.output[0]
            weights[copy.name] = copy
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _unsupported(proto: object) -> list[str]:
    """The operators of the graph onnx2torch has no converter for, each once, with their opset version."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in proto.opset_import}
    missing: list[str] = []
    for node in proto.graph.node:
        domain = node.domain or ""
        name = f"{domain + '.' if domain else ''}{node.op_type} (opset {opsets.get(domain, '?')})"
        try:
            get_converter(operation_type=node.op_type, version=opsets[domain], domain=domain)
        except (NotImplementedError, KeyError):
            if name not in missing:
                missing.append(name)
    return missing


def _take_channels_first(model: fx.GraphModule) -> None:
    """Make a channels-last graph take (B, C, H, W) images, as every other model does: its input is permuted
    first, inside the graph, so its modules keep their names."""
    graph = model.graph
    placeholder = next(n for n in graph.nodes if n.op == "placeholder")
    with graph.inserting_after(placeholder):
        permuted = graph.call_method("permute", (placeholder, 0, 2, 3, 1))
    placeholder.replace_all_uses_with(permuted, delete_user_cb=lambda user: user is not permuted)
    model.recompile()
