"""The scoring core: contracts, scoring and lineage. No Dagster import, unit-testable."""
