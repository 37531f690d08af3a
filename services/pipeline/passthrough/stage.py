"""The pass-through stage: every input message becomes one identical output message."""

from __future__ import annotations

from collections.abc import Sequence

from services.common.stage import Message, Output


def process(batch: Sequence[Message], *, output_topic: str) -> list[Output]:
    return [Output(output_topic, message.schema, message.data, key=message.key, headers=message.headers) for message in batch]
