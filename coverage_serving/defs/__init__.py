"""The Dagster layer: thin assets, checks and jobs built from the serving config."""
