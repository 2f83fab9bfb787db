"""Where a step's wall time went: consecutive segments of the thread that runs it.

The stages of a streamed partition overlap in threads (core.pipeline), so the time each stage is
busy does not add up to the step's time. What does is the calling thread's own timeline: each
segment starts where the previous one ended, so the segments add up to the time since the start
whatever runs in between, and a slow step shows which segment grew.
"""

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from coverage_serving.core.pipeline import closing

T = TypeVar("T")

_END = object()


class Stopwatch:
    def __init__(self) -> None:
        self._mark = time.perf_counter()
        self._seconds: dict[str, float] = {}

    def lap(self, segment: str) -> None:
        """The time since the previous lap (or the start) was spent on `segment`."""
        now = time.perf_counter()
        self._seconds[segment] = self._seconds.get(segment, 0.0) + now - self._mark
        self._mark = now

    def skip(self) -> None:
        """The time since the previous lap is accounted for elsewhere (a step's own stopwatch)."""
        self._mark = time.perf_counter()

    def waiting(self, segment: str, items: Iterable[T], between: str) -> Iterator[T]:
        """The items: the time spent waiting for each is `segment`, the time the consumer spends
        before asking for the next (doing its work with the last one) is `between`."""
        iterator = iter(items)
        with closing(iterator):
            while True:
                self.lap(between)
                item = next(iterator, _END)
                self.lap(segment)
                if item is _END:
                    return
                yield item  # type: ignore[misc]

    def timings(self) -> dict[str, float]:
        """Each segment as `<segment>_seconds`, in the order they first happened."""
        return {f"{segment}_seconds": round(s, 3) for segment, s in self._seconds.items()}

    def take(self, *segments: str) -> dict[str, float]:
        """The timings of these segments, reported now: they start again from zero."""
        return {
            f"{segment}_seconds": round(self._seconds.pop(segment), 3)
            for segment in segments
            if segment in self._seconds
        }
