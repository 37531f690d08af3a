"""The PRelu rewrite (converter version 2) is faster for onnxruntime and changes no number.

Equality is exact (np.array_equal), not a tolerance: every element of the rewritten
PRelu is one of the two terms PRelu itself computes, the other term being exactly zero (the
sign of a zero may differ, which compares equal and cannot change any later sum).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from services.engine.face.align import align_face
from services.engine.face.convert import CONVERTER_VERSION, convert_model, rewrite_prelu_for_nchwc
from services.engine.face.detector import Detection
from services.engine.face.models import SFACE, YUNET, cache_path, locate_model, prepare_model
from services.engine.face.session import create_session


def _blob(chips: np.ndarray) -> np.ndarray:
    """The embedder's own preprocessing: BGR uint8 NHWC to RGB float NCHW."""
    return np.ascontiguousarray(chips[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)


@pytest.fixture(scope="module")
def face_chips(lfw_faces: list[tuple[np.ndarray, Detection]]) -> np.ndarray:
    return np.stack([align_face(image, face.landmarks) for image, face in lfw_faces])


@pytest.fixture(scope="module")
def original_sface(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SFace converted as before the rewrite (version 1 graph), for comparison."""
    model, report = convert_model(onnx.load(str(locate_model(SFACE))), rewrite_prelu=False)
    assert report.rewritten_prelu == 0
    path = tmp_path_factory.mktemp("sface-original") / "sface.onnx"
    onnx.save(model, str(path))
    return path


def test_sface_rewrite_is_bit_identical_on_real_face_chips(
    face_chips: np.ndarray, original_sface: Path, model_cache_dir: Path
) -> None:
    rewritten = prepare_model(SFACE, cache_dir=model_cache_dir).path
    graph = onnx.load(str(rewritten)).graph
    # 26 of 27 PRelu feed a Conv and are rewritten; the last feeds a BatchNorm and stays.
    assert sum(n.op_type == "PRelu" for n in graph.node) == 1
    blob = _blob(face_chips)
    for threads in (1, 2):
        before = create_session(original_sface, intra_op_threads=threads)
        after = create_session(rewritten, intra_op_threads=threads)
        name = before.get_inputs()[0].name
        for i in range(len(blob)):  # batch 1, as the embed service mostly runs
            a = before.run(None, {name: blob[i : i + 1]})[0]
            b = after.run(None, {name: blob[i : i + 1]})[0]
            assert np.array_equal(a, b), "chip %d, %d threads: max diff %g" % (i, threads, np.abs(a - b).max())
        a = before.run(None, {name: blob})[0]  # one batch of all chips
        b = after.run(None, {name: blob})[0]
        assert np.array_equal(a, b)


def test_yunet_has_no_prelu_and_is_unchanged_by_the_rewrite() -> None:
    model = onnx.load(str(locate_model(YUNET)))
    _, report = convert_model(model)
    assert report.rewritten_prelu == 0


def test_cache_key_carries_the_converter_version(tmp_path: Path) -> None:
    assert CONVERTER_VERSION >= 2
    assert cache_path(SFACE, tmp_path).name.endswith("-v%d.onnx" % CONVERTER_VERSION)


def _prelu_model(slope: np.ndarray, consumer: str) -> onnx.ModelProto:
    channels = slope.shape[0]
    weight = np.random.default_rng(1).normal(size=(channels, channels, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("PRelu", ["x", "slope"], ["p"])]
    if consumer == "Conv":
        nodes.append(helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[1, 1]))
    else:
        nodes.append(helper.make_node("Sigmoid", ["p"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "prelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 5, 5])],
        [numpy_helper.from_array(slope.reshape(channels, 1, 1), "slope"), numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


def test_rewrite_is_exact_for_negative_and_large_slopes(tmp_path: Path) -> None:
    # SFace's slopes range from about -0.81 to 1.12: cover both signs, zero, and above one.
    slope = np.array([-0.8, -1e-3, 0.0, 0.25, 1.0, 1.12, 7.5, -3.0], dtype=np.float32)
    model = _prelu_model(slope, "Conv")
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert rewrite_prelu_for_nchwc(rewritten.graph) == 1
    onnx.checker.check_model(rewritten)
    assert not [n for n in rewritten.graph.node if n.op_type == "PRelu"]
    x = np.random.default_rng(0).normal(scale=50, size=(1, 8, 5, 5)).astype(np.float32)
    x[0, :, 0, 0] = 0.0
    paths = []
    for name, m in (("a", model), ("b", rewritten)):
        paths.append(tmp_path / ("%s.onnx" % name))
        onnx.save(m, str(paths[-1]))
    a, b = (create_session(p).run(None, {"x": x})[0] for p in paths)
    assert np.array_equal(a, b)


def test_prelu_feeding_anything_but_conv_is_left_alone() -> None:
    model = _prelu_model(np.array([0.1, 0.2], dtype=np.float32), "Sigmoid")
    assert rewrite_prelu_for_nchwc(model.graph) == 0
    assert [n.op_type for n in model.graph.node] == ["PRelu", "Sigmoid"]


def test_graph_before_the_rewrite_is_cached_apart_from_the_rewritten_one(tmp_path: Path) -> None:
    """Benchmarks embed with the graph as converted before the rewrite (FaceEmbedder(rewrite_prelu=False)).

    Both conversions come from the same source digest: neither may be served for the other.
    """
    assert cache_path(SFACE, tmp_path, rewrite_prelu=False) != cache_path(SFACE, tmp_path)
    original = prepare_model(SFACE, cache_dir=tmp_path, rewrite_prelu=False)
    rewritten = prepare_model(SFACE, cache_dir=tmp_path)
    assert original.path != rewritten.path and rewritten.converted_now
    assert original.identity == rewritten.identity  # same model, same numbers: same watchlist space
    assert sum(n.op_type == "PRelu" for n in onnx.load(str(original.path)).graph.node) == 27
    assert sum(n.op_type == "PRelu" for n in onnx.load(str(rewritten.path)).graph.node) == 1
    again = prepare_model(SFACE, cache_dir=tmp_path, rewrite_prelu=False)
    assert again.path == original.path and not again.converted_now
