"""Overlap the stages of a streamed partition: each stage runs one chunk ahead in its own thread.

Reading (DuckDB, BigQuery), LightGBM/numpy prediction and warehouse writes spend their time in
native code that releases the GIL, so while the warehouse writes chunk n, chunk n+1 is being
scored and chunk n+2 read: both cores stay busy. At most one chunk waits between two stages,
so memory stays bounded by a few chunks.
"""

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

_DONE = object()
_POLL_SECONDS = 0.1


def ahead(items: Iterable[T]) -> Iterator[T]:
    """The items, produced one ahead of the caller in a worker thread. An error in the worker
    is raised here; when the caller stops early, the worker stops after its current item."""
    handoff: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=1)
    stopped = threading.Event()

    def offer(entry: tuple[object, BaseException | None]) -> bool:
        while not stopped.is_set():
            try:
                handoff.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not offer((item, None)):
                    return
            offer((_DONE, None))
        except BaseException as err:  # handed to the caller, who raises it
            offer((_DONE, err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # in this thread: the generator's resources were opened here

    worker = threading.Thread(target=produce, name="coverage-serving-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        stopped.set()
        worker.join()


@contextmanager
def closing(items: Iterable[Any]) -> Iterator[None]:
    """Close a generator when its consumer stops, even on an error: what it opened (a warehouse
    connection) is released now, not when the error's traceback is collected."""
    try:
        yield
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
