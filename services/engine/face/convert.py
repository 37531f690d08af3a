"""Rewrite the shipped int8 block-quantised ONNX models into plain fp32 graphs.

Why: the OpenCV Zoo ``*_int8bq`` files store weights as DequantizeLinear(int8, scale, zero
point) with ``block_size`` attributes (also on per-tensor scales) and block-wise scales that
onnxruntime releases before 1.20 reject; SFace also lists 29 graph inputs that no node reads
and keeps its BatchNorm parameters as (overridable) graph inputs, which stops onnxruntime from
constant folding and fusing them. Folding the constant dequantisations once, at first load,
gives a model every supported onnxruntime accepts and optimises, with the same numbers
(dequantisation is exact arithmetic on constants). Both models also pin the batch dimension to
1; where the only batch-pinning ops are Reshapes with a leading 1 we make the batch symbolic so
several frames or chips run in one call.

This module only transforms ModelProto objects; locating, hashing and caching live in
services.engine.face.models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from services.engine.face.errors import ModelConversionError

logger = logging.getLogger(__name__)

#: Bump when the conversion changes, so cached conversions from older code are not reused.
#: 2: channel-wise PRelu feeding convolutions rewritten for onnxruntime's NCHWc path.
CONVERTER_VERSION = 2

BATCH_DIM_NAME = "N"

_INTEGER_TYPES = {
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.INT16,
    TensorProto.UINT16,
    TensorProto.INT32,
    TensorProto.INT4,
    TensorProto.UINT4,
}


@dataclass(frozen=True)
class ConversionReport:
    """What the conversion changed (logged, and handy in tests)."""

    folded_dequantize: int
    remaining_dequantize: int
    dropped_inputs: int
    demoted_inputs: int
    removed_initializers: int
    symbolic_batch: bool
    rewritten_prelu: int = 0


def dequantize(
    x: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    *,
    axis: int = 1,
    block_size: int = 0,
) -> np.ndarray:
    """Evaluate ONNX DequantizeLinear on constant arrays: ``(x - zero_point) * scale``.

    Supports the three granularities of opset 21: per-tensor (scale has one element, whatever
    ``block_size`` says), per-axis (1-D scale as long as ``x.shape[axis]``) and blocked (scale of
    the same rank as ``x``, ``ceil(x.shape[axis] / block_size)`` along ``axis``). The result has
    the scale's float type (float32 for every model we ship).
    """
    xf = np.asarray(x).astype(np.float32)
    s = np.asarray(scale)
    out_dtype = s.dtype if np.issubdtype(s.dtype, np.floating) else np.dtype(np.float32)
    sf = s.astype(np.float32)
    zf = None if zero_point is None else np.asarray(zero_point).astype(np.float32)
    if zf is not None and zf.shape != s.shape:
        raise ValueError("zero point shape %s differs from scale shape %s" % (zf.shape, s.shape))

    if sf.size == 1:
        # Per-tensor. Shipped YuNet/SFace set block_size here too; it is meaningless.
        s_b = sf.reshape(())
        z_b = None if zf is None else zf.reshape(())
    else:
        rank = xf.ndim
        if rank == 0:
            raise ValueError("non-scalar scale for a scalar tensor")
        ax = axis + rank if axis < 0 else axis
        if not 0 <= ax < rank:
            raise ValueError("axis %d out of range for rank %d" % (axis, rank))
        if block_size > 0 and sf.ndim == rank:
            expected = list(xf.shape)
            expected[ax] = -(-xf.shape[ax] // block_size)
            if list(sf.shape) != expected:
                raise ValueError(
                    "blocked scale shape %s, expected %s (x %s, axis %d, block %d)"
                    % (sf.shape, tuple(expected), xf.shape, ax, block_size)
                )
            s_b = np.repeat(sf, block_size, axis=ax)
            s_b = np.take(s_b, np.arange(xf.shape[ax]), axis=ax)
            z_b = None
            if zf is not None:
                z_b = np.repeat(zf, block_size, axis=ax)
                z_b = np.take(z_b, np.arange(xf.shape[ax]), axis=ax)
        elif sf.ndim == 1 and sf.shape[0] == xf.shape[ax]:
            bshape = [1] * rank
            bshape[ax] = -1
            s_b = sf.reshape(bshape)
            z_b = None if zf is None else zf.reshape(bshape)
        else:
            raise ValueError(
                "scale shape %s fits neither per-tensor, per-axis nor blocked for x %s"
                % (sf.shape, xf.shape)
            )
    y = xf - z_b if z_b is not None else xf
    return (y * s_b).astype(out_dtype, copy=False)


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    """The value of a Constant node, or None for forms we do not fold (sparse tensors)."""
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if attr.name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if attr.name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(onnx.helper.get_attribute_value(attr))
    return default


def _quantized_dtype(
    name: str, initializers: dict[str, TensorProto], const_nodes: dict[str, onnx.NodeProto]
) -> int | None:
    if name in initializers:
        return initializers[name].data_type
    node = const_nodes.get(name)
    if node is not None:
        for attr in node.attribute:
            if attr.name == "value":
                return attr.t.data_type
    return None


def convert_model(
    model: onnx.ModelProto, *, symbolic_batch: bool = True, rewrite_prelu: bool = True
) -> tuple[onnx.ModelProto, ConversionReport]:
    """Return a converted copy of ``model`` and a report of what changed.

    Raises ModelConversionError (without a file name; the caller adds it) when a constant
    DequantizeLinear cannot be evaluated.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph

    initializers = {t.name: t for t in graph.initializer}
    const_nodes = {
        node.output[0]: node for node in graph.node if node.op_type == "Constant" and node.output
    }

    def const_value(name: str) -> np.ndarray | None:
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        node = const_nodes.get(name)
        return None if node is None else _constant_node_value(node)

    # Initializers that are also graph inputs may be overridden at run time: not constant.
    overridable = {i.name for i in graph.input if i.name in initializers}

    folded = 0
    remaining = 0
    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            new_nodes.append(node)
            continue
        inputs = [name for name in node.input]
        present = [name for name in inputs if name]
        if any(name in overridable for name in present):
            values = None
        else:
            values = [const_value(name) if name else None for name in inputs]
        if values is None or any(v is None for v, name in zip(values, inputs) if name):
            remaining += 1
            _strip_meaningless_block_size(node, inputs, const_value)
            new_nodes.append(node)
            continue
        dtype = _quantized_dtype(inputs[0], initializers, const_nodes)
        if dtype not in _INTEGER_TYPES:
            raise ModelConversionError(
                "DequantizeLinear %r: unsupported quantised type %s"
                % (node.name or node.output[0], TensorProto.DataType.Name(dtype or 0))
            )
        x = values[0]
        scale = values[1]
        zero = values[2] if len(values) > 2 and inputs[2] else None
        try:
            y = dequantize(
                x,
                scale,
                zero,
                axis=_attr(node, "axis", 1),
                block_size=_attr(node, "block_size", 0),
            )
        except ValueError as exc:
            raise ModelConversionError(
                "DequantizeLinear %r: %s" % (node.name or node.output[0], exc)
            ) from exc
        graph.initializer.append(numpy_helper.from_array(y, name=node.output[0]))
        folded += 1
    del graph.node[:]
    graph.node.extend(new_nodes)

    dropped, demoted = _prune_inputs(graph)
    removed = _dead_code_elimination(graph)
    batch_ok = _make_batch_symbolic(graph) if symbolic_batch else False
    prelu = rewrite_prelu_for_nchwc(graph) if rewrite_prelu else 0

    report = ConversionReport(
        folded_dequantize=folded,
        remaining_dequantize=remaining,
        dropped_inputs=dropped,
        demoted_inputs=demoted,
        removed_initializers=removed,
        symbolic_batch=batch_ok,
        rewritten_prelu=prelu,
    )
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise ModelConversionError("converted graph fails the ONNX checker: %s" % exc) from exc
    return out, report


def _strip_meaningless_block_size(node: onnx.NodeProto, inputs: list[str], const_value) -> None:
    """Drop block_size from a run-time DequantizeLinear whose scale is per-tensor."""
    if len(inputs) < 2 or not inputs[1]:
        return
    scale = const_value(inputs[1])
    if scale is None or np.asarray(scale).size != 1:
        return
    kept = [a for a in node.attribute if a.name != "block_size"]
    if len(kept) != len(node.attribute):
        del node.attribute[:]
        node.attribute.extend(kept)


def _prune_inputs(graph: onnx.GraphProto) -> tuple[int, int]:
    """Drop graph inputs no node reads; turn initializer-backed inputs into plain constants."""
    used = {name for node in graph.node for name in node.input}
    used.update(o.name for o in graph.output)
    init_names = {t.name for t in graph.initializer}
    kept = []
    dropped = demoted = 0
    for value in graph.input:
        if value.name not in used:
            dropped += 1
        elif value.name in init_names:
            demoted += 1
        else:
            kept.append(value)
    del graph.input[:]
    graph.input.extend(kept)
    return dropped, demoted


def _dead_code_elimination(graph: onnx.GraphProto) -> int:
    """Remove nodes that do not reach a graph output, then unreferenced initializers."""
    needed = {o.name for o in graph.output}
    kept_rev = []
    for node in reversed(graph.node):
        if any(name in needed for name in node.output):
            kept_rev.append(node)
            needed.update(name for name in node.input if name)
            # Subgraph attributes (If/Loop) may read outer names; keep it simple and safe.
            for attr in node.attribute:
                if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                    needed.update(_outer_names(attr))
    del graph.node[:]
    graph.node.extend(reversed(kept_rev))
    inputs = {i.name for i in graph.input}
    keep_init = [t for t in graph.initializer if t.name in needed or t.name in inputs]
    removed = len(graph.initializer) - len(keep_init)
    del graph.initializer[:]
    graph.initializer.extend(keep_init)
    return removed


def _outer_names(attr: onnx.AttributeProto) -> set[str]:
    graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
    names: set[str] = set()
    for sub in graphs:
        for node in sub.node:
            names.update(node.input)
    return names


def _make_batch_symbolic(graph: onnx.GraphProto) -> bool:
    """Replace a fixed batch of 1 by the symbol N where only Reshapes pin it.

    A Reshape of an activation to a constant shape starting with 1 is rewritten to start with
    0 ("copy the input's dimension"), which keeps batch 1 identical and lets larger batches
    flow. Returns False (and leaves the graph unchanged) when the model does not look like that.
    """
    if not graph.input:
        return False
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            return False
        if dims[0].HasField("dim_param"):
            continue
        if dims[0].dim_value != 1:
            return False

    initializers = {t.name: t for t in graph.initializer}
    constant = set(initializers) | {
        o for node in graph.node if node.op_type == "Constant" for o in node.output
    }
    patches: list[tuple[onnx.NodeProto, np.ndarray]] = []
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] in constant:
            continue
        shape_name = node.input[1]
        if shape_name not in initializers or _attr(node, "allowzero", 0) == 1:
            logger.info("batch stays fixed: Reshape %s has a run-time or allowzero shape", node.name)
            return False
        shape = numpy_helper.to_array(initializers[shape_name]).copy()
        if shape.ndim != 1 or shape.size == 0:
            return False
        if shape[0] == 1:
            shape[0] = 0
            patches.append((node, shape))
        elif shape[0] not in (0, -1):
            return False

    for index, (node, shape) in enumerate(patches):
        name = "%s__batch%d" % (node.input[1], index)
        graph.initializer.append(numpy_helper.from_array(shape, name=name))
        node.input[1] = name
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = BATCH_DIM_NAME
    # Intermediate shapes recorded with batch 1 would now be wrong.
    del graph.value_info[:]
    _dead_code_elimination(graph)
    return True


def rewrite_prelu_for_nchwc(graph: onnx.GraphProto) -> int:
    """Rewrite channel-wise PRelu nodes that feed only convolutions into NCHWc-friendly ops.

    Why: onnxruntime runs convolutions in its blocked NCHWc layout, but has no NCHWc PRelu, so
    each PRelu between two convolutions costs a ReorderOutput, a slow broadcasting PRelu kernel
    and a ReorderInput (profiled on SFace: about 40 % of the model's time). We write

        PRelu(y) = Relu(y) + (-slope) * Relu(-y)

    with each product as a 1x1 depthwise convolution (weights -1, then -slope per channel) and
    the sum as an Add. onnxruntime keeps all of it in NCHWc and fuses the first Relu and the Add
    into the convolutions. The result is bit-identical, not just close: for every element one
    of the two terms is exactly zero, negation is exact, and the remaining product is the same
    single rounded product ``slope * y`` PRelu computes (tests compare the outputs exactly).

    Only PRelu nodes with a constant per-channel slope ([C,1,1] or [1,C,1,1]) whose every
    consumer is a Conv are rewritten; others (e.g. a PRelu before a standalone BatchNorm, which
    onnxruntime would then also move to NCHWc and round differently) are left alone.
    Returns the number rewritten.
    """
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    outputs = {o.name for o in graph.output}

    new_nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in graph.node:
        slope = _channel_slope(node, initializers)
        users = consumers.get(node.output[0], []) if node.op_type == "PRelu" else []
        if slope is None or not users or any(op != "Conv" for op in users) or node.output[0] in outputs:
            new_nodes.append(node)
            continue
        channels = slope.shape[0]
        x, y = node.input[0], node.output[0]
        prefix = "%s__prelu" % (node.name or y)
        minus_one = prefix + "_minus_one"
        minus_slope = prefix + "_minus_slope"
        graph.initializer.append(numpy_helper.from_array(np.full((channels, 1, 1, 1), -1.0, np.float32), minus_one))
        graph.initializer.append(numpy_helper.from_array((-slope).reshape(channels, 1, 1, 1), minus_slope))
        depthwise = {"group": channels, "kernel_shape": [1, 1]}
        new_nodes += [
            onnx.helper.make_node("Relu", [x], [prefix + "_pos"], name=prefix + "_relu_pos"),
            onnx.helper.make_node("Conv", [x, minus_one], [prefix + "_neg_y"], name=prefix + "_negate", **depthwise),
            onnx.helper.make_node("Relu", [prefix + "_neg_y"], [prefix + "_neg"], name=prefix + "_relu_neg"),
            onnx.helper.make_node("Conv", [prefix + "_neg", minus_slope], [prefix + "_scaled"], name=prefix + "_scale", **depthwise),
            onnx.helper.make_node("Add", [prefix + "_scaled", prefix + "_pos"], [y], name=prefix + "_add"),
        ]
        rewritten += 1
    if rewritten:
        del graph.node[:]
        graph.node.extend(new_nodes)
        _dead_code_elimination(graph)  # the original slopes are no longer read
    return rewritten


def _channel_slope(node: onnx.NodeProto, initializers: dict[str, TensorProto]) -> np.ndarray | None:
    """The float32 [C] slope of a PRelu with a constant per-channel slope, else None."""
    if node.op_type != "PRelu" or len(node.input) != 2 or node.input[1] not in initializers:
        return None
    tensor = initializers[node.input[1]]
    if tensor.data_type != TensorProto.FLOAT:
        return None
    slope = numpy_helper.to_array(tensor)
    shape = tuple(slope.shape)
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3 or shape[1:] != (1, 1) or shape[0] < 1:
        return None
    return slope.reshape(shape[0]).astype(np.float32)
