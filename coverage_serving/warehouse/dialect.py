"""How each warehouse's SQL names a table, quotes a column and refers to a parameter: what the
statements written once for both warehouses (history, comparison) vary by."""

from collections.abc import Callable
from dataclasses import dataclass

from coverage_serving.warehouse.base import TableSpec


@dataclass(frozen=True)
class Dialect:
    table: Callable[[TableSpec], str]  # a table as the warehouse's SQL names it
    quote: Callable[[str], str]  # a column name, quoted
    parameter: Callable[[str], str]  # how a statement refers to a named query parameter
