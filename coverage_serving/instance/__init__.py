"""The local Dagster instance: which processes a run has, the health check that lets the daemon
fail a run whose processes are gone, and freeing the pools such a run holds."""
