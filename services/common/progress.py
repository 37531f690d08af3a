"""Progress of long commands (`lfr eval`, `lfr watchlist import`, benchmarks, reports).

On a terminal: a tqdm bar with counts, rate and time left, on stderr. Otherwise (CI logs, pipes,
`kubectl logs`): one plain line at most every ``interval_s`` seconds and a last line at the end,
``<what>: 1200/4700 (25%), 3.1/s, about 1130 s left``, so logs stay short and greppable.
stdout is never used: commands keep it for their results.

    with Progress("probes", total=len(chips)) as bar:
        for chip in chips:
            ...
            bar.update()
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    def __init__(self, what: str, total: int | None = None, unit: str = "it", *, stream: IO[str] | None = None,
                 interval_s: float = 10.0, tty: bool | None = None) -> None:
        self.what = what
        self.total = total
        self.count = 0
        self._stream = stream or sys.stderr
        self._interval_s = interval_s
        self._started = time.monotonic()
        self._last_line = self._started
        is_tty = self._stream.isatty() if tty is None else tty
        self._bar = tqdm(total=total, desc=what, unit=unit, file=self._stream, dynamic_ncols=True) if is_tty else None

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last_line >= self._interval_s:
            self._line()

    def set_total(self, total: int) -> None:
        self.total = total
        if self._bar is not None:
            self._bar.total = total
            self._bar.refresh()

    def _line(self) -> None:
        self._last_line = time.monotonic()
        elapsed = max(self._last_line - self._started, 1e-9)
        rate = self.count / elapsed
        text = f"{self.what}: {self.count}"
        if self.total:
            text += f"/{self.total} ({100 * self.count / self.total:.0f}%)"
        text += f", {rate:.1f}/s"
        if self.total and rate > 0 and self.count < self.total:
            text += f", about {(self.total - self.count) / rate:.0f} s left"
        elif self.total and self.count >= self.total:
            text += f", done in {elapsed:.0f} s"
        print(text, file=self._stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def track(items: Iterable[T], what: str, total: int | None = None, unit: str = "it", **kwargs) -> Iterator[T]:
    """Iterate ``items`` with a Progress (total taken from ``len`` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(what, total, unit, **kwargs) as bar:
        for item in items:
            yield item
            bar.update()
