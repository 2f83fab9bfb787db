"""Deterministic, plausible source tables for the demo: retail outlets and grid cells.

Each (table, market, month) partition is generated from its own seed, so a partition is the
same whenever and in whatever order it is made, and entities keep their ids across months.
"""

import zlib
from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd

from coverage_serving.partition import Partition

# Rough city centres, so coordinates look like the market; other markets get a derived one.
MARKET_CENTRES = {"IN": (19.07, 72.88), "ID": (-6.20, 106.85), "VN": (10.78, 106.70)}
DEFAULT_ROWS = {"stores": 2_000, "grid_cells": 5_000}
STORE_TYPES = ["kirana", "convenience", "pharmacy", "supermarket"]
# A controlled shift for the monitoring checks to find: in one market and month, the stores'
# income_index is scaled by this factor (a new census base, say); nothing else moves.
SHIFTED_PARTITION = ("ID", date(2026, 2, 1))
SHIFTED_FEATURE, SHIFT_FACTOR = "income_index", 1.2


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def _centre(market: str) -> tuple[float, float]:
    if market in MARKET_CENTRES:
        return MARKET_CENTRES[market]
    rng = _rng("centre", market)
    return float(rng.uniform(-30, 30)), float(rng.uniform(-120, 120))


def _months_since(start: date, month: date) -> int:
    return (month.year - start.year) * 12 + month.month - start.month


def stores(partition: Partition, rows: int) -> pd.DataFrame:
    """Outlets of a market: stable attributes per store, a little drift month to month."""
    base, drift = _rng("stores", partition.market), _rng("stores", partition.key)
    lat, lon = _centre(partition.market)
    store_type = base.choice(STORE_TYPES, rows, p=[0.55, 0.2, 0.15, 0.1])
    population = base.lognormal(0, 0.5, rows) * drift.normal(1, 0.02, rows)
    shift = SHIFT_FACTOR if (partition.market, partition.month) == SHIFTED_PARTITION else 1.0
    return pd.DataFrame(
        {
            "store_id": [f"S-{partition.market}-{i:06d}" for i in range(rows)],
            "market": partition.market,
            "month": pd.Timestamp(partition.month),
            "store_type": store_type,
            "channel": np.where(store_type == "supermarket", "modern", "traditional"),
            "latitude": lat + base.normal(0, 0.3, rows),
            "longitude": lon + base.normal(0, 0.3, rows),
            "population_index": population.round(4),
            "income_index": (
                base.lognormal(0, 0.4, rows) * drift.normal(1, 0.01, rows) * shift
            ).round(4),
            "poi_count": base.poisson(population * 12),
            "competitor_count": drift.poisson(population * 3),
            "distance_to_distributor_km": base.gamma(2.0, 4.0, rows).round(2),
            "current_sku_count": drift.poisson(np.where(store_type == "supermarket", 120, 35)),
            "months_open": base.integers(1, 240, rows)
            + _months_since(date(2026, 1, 1), partition.month),
        }
    )


def grid_cells(partition: Partition, rows: int) -> pd.DataFrame:
    """1 km cells of a market: people, roads and outlets already covered."""
    base, drift = _rng("grid", partition.market), _rng("grid", partition.key)
    lat, lon = _centre(partition.market)
    side = int(np.ceil(np.sqrt(rows)))
    index = np.arange(rows)
    urbanicity = np.clip(base.poisson(1.5, rows) + 1, 1, 5)
    population = base.lognormal(5 + 0.6 * urbanicity, 0.8) * drift.normal(1, 0.01, rows)
    return pd.DataFrame(
        {
            "grid_id": [f"G-{partition.market}-{i:07d}" for i in index],
            "market": partition.market,
            "month": pd.Timestamp(partition.month),
            "centroid_lat": (lat + (index // side - side / 2) * 0.009).round(5),
            "centroid_lon": (lon + (index % side - side / 2) * 0.009).round(5),
            "population": population.round(1),
            "road_density": (base.gamma(1.5, 1.0, rows) * urbanicity).round(3),
            "poi_count": base.poisson(urbanicity * 4),
            "covered_outlet_count": drift.poisson(population / 900),
            "urbanicity_class": urbanicity.astype("int64"),
        }
    )


GENERATORS: dict[str, Callable[[Partition, int], pd.DataFrame]] = {
    "stores": stores,
    "grid_cells": grid_cells,
}
