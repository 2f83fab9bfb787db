"""Demo source data and demo models, so the platform can be tried with nothing else."""
