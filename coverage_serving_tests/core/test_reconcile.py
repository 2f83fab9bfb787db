"""Which partitions reconciliation rescores, and in how few runs."""

from datetime import date

from coverage_serving.core.reconcile import Held, rectangles, stale
from coverage_serving.partition import Partition

MARKETS = ["IN", "ID", "VN"]
JAN, FEB, MAR, APR = (date(2026, m, 1) for m in (1, 2, 3, 4))


def grid(markets: list[str], months: list[date]) -> list[Partition]:
    return [Partition(m, month) for month in months for m in markets]


def spans(partitions: list[Partition]) -> list[tuple[str, str]]:
    return [(r.first.key, r.last.key) for r in rectangles(MARKETS, partitions)]


def test_a_whole_table_is_one_rectangle() -> None:
    assert spans(grid(MARKETS, [JAN, FEB, MAR])) == [("IN|2026-01-01", "VN|2026-03-01")]


def test_every_rectangle_covers_exactly_the_partitions_asked() -> None:
    asked = [*grid(["ID"], [JAN]), *grid(["IN", "ID"], [FEB]), *grid(["VN"], [FEB, MAR])]
    found = rectangles(MARKETS, asked)
    covered = [p for r in found for p in r.partitions]
    assert sorted(covered) == sorted(asked) and len(covered) == len(set(covered))
    assert [(r.first.key, r.last.key) for r in found] == [
        ("ID|2026-01-01", "ID|2026-01-01"),
        ("IN|2026-02-01", "VN|2026-02-01"),
        ("VN|2026-03-01", "VN|2026-03-01"),
    ]


def test_markets_not_adjacent_in_config_order_and_gaps_in_months_split_rectangles() -> None:
    assert spans(grid(["IN", "VN"], [JAN, APR])) == [
        ("IN|2026-01-01", "IN|2026-01-01"),
        ("VN|2026-01-01", "VN|2026-01-01"),
        ("IN|2026-04-01", "IN|2026-04-01"),
        ("VN|2026-04-01", "VN|2026-04-01"),
    ]


def test_months_across_a_year_end_are_consecutive() -> None:
    assert spans(grid(["IN"], [date(2025, 12, 1), JAN])) == [("IN|2025-12-01", "IN|2026-01-01")]


def test_stale_partitions_hold_anything_but_the_desired_version() -> None:
    held = {
        Partition("IN", JAN): Held(frozenset({2}), "event 1"),
        Partition("ID", JAN): Held(frozenset({1}), "event 2"),
        Partition("VN", JAN): Held(frozenset({1, 2}), "runs a,b"),  # mixed: rescored too
    }
    assert stale(2, held) == [Partition("ID", JAN), Partition("VN", JAN)]


def test_a_run_key_changes_only_with_the_version_partitions_or_what_they_held() -> None:
    partitions = grid(MARKETS, [JAN])
    held = {p: Held(frozenset({1}), f"event {i}") for i, p in enumerate(partitions)}
    [rescoring] = rectangles(MARKETS, partitions)
    key = rescoring.key("store", 2, held)
    assert key.startswith("store:v2:IN|2026-01-01..VN|2026-01-01:")
    assert rescoring.key("store", 2, dict(held)) == key
    assert rescoring.key("store", 3, held) != key
    rewritten = {**held, partitions[0]: Held(frozenset({1}), "event 99")}
    assert rescoring.key("store", 2, rewritten) != key
