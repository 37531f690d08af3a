"""Back-pressure from detect: a camera's analysed rate follows how far behind detect is.

Policy ``aimd-detect-lag/v1``. Ingest learns detect's lag from the broker, with no new topic
and no help from detect: the oldest frame detect has not committed on a partition of the frames
topic (its consumer group's committed offset, read through the admin side of a consumer that
never joins the group) is one ingest sent, and ingest remembers when it captured each frame it
sent, so the lag is that frame's age (``backlog_age_s``). Detect commits once a second
(auto-commit), so a healthy pipeline reads 0-1.2 s.

Per camera, every ``LFR_BACKPRESSURE_POLL_S``: a lag above ``max_lag_s`` halves the analysed
rate (down to ``min_fps``: tracking needs a steady rate); below ``recover_lag_s`` it rises by
``increase_fps`` up to the camera's fps; between them, or with no figure (detect has not
committed yet), it holds. Frames are shed at capture, before encoding, evenly (every k-th frame
of the camera's rate goes out, ``CameraRate.admit``), so what reaches the broker is always the
newest frame; each shed frame is counted (``lfr_frames_shed_total``). Without it, a 2.5x
overload filled the frames topic with frames detect later skipped as stale.

Pure: no Kafka here; the service's probe thread feeds it offsets.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field

POLICY = "aimd-detect-lag/v1"


@dataclass(frozen=True)
class BackpressureConfig:
    max_lag_s: float = 2.0
    recover_lag_s: float = 1.5
    decrease: float = 0.5
    increase_fps: float = 1.0
    min_fps: float = 1.0


@dataclass
class CameraRate:
    """The analysed rate of one camera under ``aimd-detect-lag/v1``."""

    fps: float
    config: BackpressureConfig = BackpressureConfig()
    rate: float = field(init=False)
    _credit: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.rate = self.fps

    def update(self, lag_s: float | None) -> float:
        """Apply one lag reading (None: no figure, hold); returns the analysed fps."""
        c = self.config
        if lag_s is not None:
            if lag_s > c.max_lag_s:
                self.rate = max(min(c.min_fps, self.fps), self.rate * c.decrease)
            elif lag_s < c.recover_lag_s:
                self.rate = min(self.fps, self.rate + c.increase_fps)
        return self.rate

    def admit(self) -> bool:
        """Called once per frame at the camera's fps: True to analyse it, False to shed it."""
        self._credit += self.rate / self.fps
        if self._credit >= 1.0 - 1e-9:
            self._credit -= 1.0
            return True
        return False


class SentLog:
    """Per partition, (offset, captured_at_ms) of the frames the broker acknowledged, bounded."""

    def __init__(self, max_per_partition: int = 20_000) -> None:
        self._sent: dict[int, collections.deque[tuple[int, int]]] = {}
        self._max = max_per_partition

    def add(self, partition: int, offset: int, captured_at_ms: int) -> None:
        log = self._sent.setdefault(partition, collections.deque(maxlen=self._max))
        if log and offset <= log[-1][0]:
            log.clear()  # offsets went back: the topic was recreated (an embedded broker restarted empty)
        log.append((offset, captured_at_ms))

    def backlog_age_s(self, committed: Mapping[int, int | None], now_ms: int) -> dict[int, float | None]:
        """Per partition we sent to: the age of the oldest frame at or after the committed offset
        (0.0 when everything sent is committed; None when the group has no committed offset)."""
        ages: dict[int, float | None] = {}
        for partition, log in self._sent.items():
            offset = committed.get(partition)
            if offset is None or offset < 0:
                ages[partition] = None
                continue
            # Frames detect has committed are never needed again: forget them.
            while log and log[0][0] < offset:
                log.popleft()
            ages[partition] = max(0.0, (now_ms - log[0][1]) / 1000) if log else 0.0
        return ages
