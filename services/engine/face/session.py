"""onnxruntime session factory.

Why one place: every model runs with the same threading policy. Services scale by running more
processes (one per Kafka partition), so each session uses a small, configurable intra-op pool,
a single inter-op thread and sequential execution; idle worker threads do not spin by default so
co-located processes do not steal each other's cores.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

from services.engine.face.errors import ModelLoadError

logger = logging.getLogger(__name__)


def create_session(
    model_path: Path | str,
    *,
    intra_op_threads: int = 1,
    allow_spinning: bool = False,
) -> ort.InferenceSession:
    """Open ``model_path`` on the CPU provider; raise ModelLoadError naming the file on failure."""
    if intra_op_threads < 1:
        raise ValueError("intra_op_threads must be >= 1, got %r" % intra_op_threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings go to stderr, not our logs
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types from C++
        raise ModelLoadError("onnxruntime cannot load %s: %s" % (model_path, exc)) from exc
    logger.debug("onnxruntime session for %s with %d intra-op threads", model_path, intra_op_threads)
    return session


def batch_dim_is_dynamic(session: ort.InferenceSession) -> bool:
    """True when the first input's batch dimension is symbolic (several items per run)."""
    dim = session.get_inputs()[0].shape[0]
    return not isinstance(dim, int)
