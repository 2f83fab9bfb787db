from datetime import date

import pytest

from coverage_serving.errors import ServingError
from coverage_serving.partition import Partition


def test_a_key_round_trips() -> None:
    partition = Partition.parse("IN|2026-01-01")
    assert partition == Partition("IN", date(2026, 1, 1))
    assert partition.key == str(partition) == "IN|2026-01-01"


@pytest.mark.parametrize(
    "key", ["IN", "IN|2026-13-01", "IN|2026-01-02", "|2026-01-01", "IN-2026-01-01", "IN|"]
)
def test_a_malformed_key_is_named(key: str) -> None:
    with pytest.raises(ServingError, match=r"is not of the form MARKET\|YYYY-MM-01") as raised:
        Partition.parse(key)
    assert repr(key) in str(raised.value)
