"""Two fixes to faust-streaming 0.15.3 that keep a restarted or rebalanced dispatcher from
silently skipping input records. Both are wired in through faust's own extension points
(the app's ``TableManager`` setting and ``App._new_consumer``); nothing is monkeypatched.

1. **Clear-after-seek (faust-streaming/faust #596).** After a rebalance faust's
   ``Recovery.on_recovery_completed`` resumes the stream partitions, seeks them to their
   committed offsets and only then resumes flow control, which clears every stream queue.
   Records fetched between the seek and the clear are dropped while the consumer position
   has moved past them: they are not processed until the next rebalance, and once later
   offsets are acked faust's commit may step over them for good (its head-gap check lets a
   gap of one through, #606). :class:`OrderedRecovery` clears the queues first, seeks while
   the stream partitions are still paused, and resumes them last; nothing is cleared after.

2. **Live set handed to the fetch thread.** faust passes its *live* set of active
   partitions to aiokafka's ``fetched_records`` in the consumer thread, which long-polls on
   it while the event loop keeps pausing and resuming partitions. When the set becomes empty
   during the poll (recovery just paused the changelog partitions, the stream partitions are
   not resumed yet) aiokafka reads it as "every partition" and consumes buffered stream
   records, which faust then throws away because they are not active: the position has
   advanced past records nobody processed. :class:`SnapshotFetchConsumer` hands over a copy.

Our restart test hit (1) about one run in four, and (2) once (1) was reordered naively.

3. **Fetch wait (latency, issue #17).** faust creates its aiokafka consumer with
   ``fetch_max_wait_ms=1500`` hard-coded. A broker that does not answer a long poll early when
   data arrives (the embedded Tansu, measured: a caught-up consumer saw a record 115 ms after
   it was produced at librdkafka's 500 ms default, 9 ms at 10 ms) then adds up to 1.5 s to
   every alert while the dispatcher is idle. :class:`ShortFetchWaitThread` sets the wait to
   :data:`FETCH_MAX_WAIT_MS` on the consumer before it starts (it is read when aiokafka builds
   its fetcher); on a Kafka broker a shorter wait only costs idle fetch requests.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

FETCH_MAX_WAIT_MS = 10


class OrderedRecovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """faust's ``on_recovery_completed`` with the stream resume reordered (see module doc)."""
        app: Any = self.app
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table]))
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        if app.consumer_generation_id != generation_id:
            self.log.warning(f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}")
            return
        assignment = consumer.assignment()
        # 1. Drop queued records of the previous generation while the stream partitions are paused.
        app.flow_control.resume()
        if assignment:
            # 2. Rewind the still-paused stream partitions to their committed offsets.
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        # 3. Resume them; from here on nothing is cleared.
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


class OrderedTableManager(TableManager):
    """faust's TableManager, recovering with :class:`OrderedRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = OrderedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return cast(Recovery, self._recovery)


class ShortFetchWaitThread(AIOKafkaConsumerThread):
    """faust's consumer thread, with the fetch wait of fix 3."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # aiokafka reads it in start()
        return consumer


class SnapshotFetchConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer, fetching for a snapshot of the active partitions (fix 2),
    through a consumer thread with a short fetch wait (fix 3)."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        if active_partitions is not None:
            active_partitions = set(active_partitions)
            if not active_partitions:
                await asyncio.sleep(min(timeout, 0.2))
                return {}
        return await super()._getmany(active_partitions, timeout)


class DispatchApp(faust.App):
    """A faust App with the fixes: set ``TableManager=OrderedTableManager`` in its settings."""

    def _new_consumer(self) -> Any:
        transport: Any = self.transport
        if not issubclass(transport.Consumer, AIOKafkaConsumer):
            return super()._new_consumer()
        return SnapshotFetchConsumer(
            transport,
            callback=self.topics.on_message,
            loop=transport.loop,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
        )
