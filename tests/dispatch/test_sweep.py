"""The state sweep of the faust runner, in process: which open-alert states are dropped.

The changelog writer is replaced by a recorder (this checks the selection, not Kafka; the
changelog itself is exercised against the broker in test_service.py)."""

from __future__ import annotations

import asyncio

from services.common.settings import DispatchSettings, load_settings
from services.pipeline.dispatch.policy import OpenAlert
from services.pipeline.dispatch.service import Dispatcher
from tests.dispatch.helpers import NOW


def state(subject: str, last_seen_ms: int) -> dict:
    alert = OpenAlert(f"id-{subject}", subject, "van-1", "cam-1", last_seen_ms - 1000, last_seen_ms, 2, 0, 0.7)
    return alert.to_json()


def test_sweep_drops_closed_windows_of_its_partition_only(tmp_path):
    settings = load_settings(DispatchSettings, cooldown_s=60, state_grace_s=10)
    dispatcher = Dispatcher(settings, partitions=2, datadir=tmp_path, clock=lambda: NOW)
    written: list = []

    async def record(partition: int, key: str, value) -> None:
        written.append((partition, key, value))

    dispatcher._changelog = record  # type: ignore[method-assign]
    table = dispatcher.table.data
    table["old|van-1"] = {"partition": 0, "state": state("old", NOW - 70_001)}      # closed + grace: dropped
    table["recent|van-1"] = {"partition": 0, "state": state("recent", NOW - 69_999)}
    table["other|van-1"] = {"partition": 1, "state": state("other", NOW - 500_000)}  # another partition: left

    dispatcher._event_time_ms[0] = NOW - 3_600_000  # replaying an old backlog: nothing is dropped
    asyncio.run(dispatcher._sweep(0, NOW))
    assert written == [] and len(table) == 3

    dispatcher._next_sweep_ms.clear()
    dispatcher._event_time_ms[0] = NOW
    asyncio.run(dispatcher._sweep(0, NOW))
    assert written == [(0, "old|van-1", None)]
    assert set(table) == {"recent|van-1", "other|van-1"}
