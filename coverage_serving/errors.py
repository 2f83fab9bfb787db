"""Errors a user can act on: each names what is wrong and where, and carries it as metadata."""

from typing import Any


class ServingError(Exception):
    """A partition could not be served. Nothing was written when this is raised."""

    def metadata(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": str(self)}


class RegistryError(ServingError):
    """The model registry did not answer, or has no such model, alias or version."""


class RegistryUnavailableError(RegistryError):
    """The registry did not answer (connection refused, timeout, server error)."""


class ModelLoadError(ServingError):
    """A registered version exists but its artifact cannot be loaded."""


class UnservableModelError(ServingError):
    """A model version cannot score the configured features (signature mismatch)."""


class ModelOutputError(ServingError):
    """The model returned something that cannot be a prediction column."""


class WarehouseError(ServingError):
    """A table is missing, has the wrong columns, or a write was refused."""


class HeldPoolError(ServingError):
    """A table's pool is held by a run that will never give it back, or a run cannot be
    released."""


class EmptyPartitionError(ServingError):
    """A partition has no rows; writing it would silently wipe the old rows."""
