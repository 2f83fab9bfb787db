"""On-demand scoring: an HTTP endpoint over the same core as the batch tables."""
