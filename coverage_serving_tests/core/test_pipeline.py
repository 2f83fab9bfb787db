"""The one-ahead worker thread that overlaps reading, scoring and writing."""

import threading
import time
from collections.abc import Iterator

import pytest

from coverage_serving.core.pipeline import ahead


def test_items_arrive_in_order_produced_in_another_thread() -> None:
    producers: set[str] = set()

    def produce() -> Iterator[int]:
        for item in range(50):
            producers.add(threading.current_thread().name)
            yield item

    assert list(ahead(produce())) == list(range(50))
    assert producers == {"coverage-serving-ahead"}


def test_the_next_item_is_produced_while_the_caller_works() -> None:
    produced_at: list[float] = []

    def slow() -> Iterator[int]:
        for item in range(3):
            time.sleep(0.2)
            produced_at.append(time.monotonic())
            yield item

    started = time.monotonic()
    for _ in ahead(slow()):
        time.sleep(0.2)  # the caller's own work on the item
    # Sequential would take 6 x 0.2 s; overlapped, about 4 x 0.2 s.
    assert time.monotonic() - started < 1.05


def test_an_error_in_the_worker_is_raised_to_the_caller() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise ValueError("chunk 2 is broken")

    items = ahead(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="chunk 2 is broken"):
        next(items)


def test_stopping_early_closes_the_source_in_its_thread() -> None:
    closed_in: list[str] = []

    def endless() -> Iterator[int]:
        try:
            item = 0
            while True:
                yield item
                item += 1
        finally:
            closed_in.append(threading.current_thread().name)

    items = ahead(endless())
    assert next(items) == 0
    items.close()  # e.g. the writer refused the partition

    assert closed_in == ["coverage-serving-ahead"]
    assert not any(t.name == "coverage-serving-ahead" for t in threading.enumerate())
