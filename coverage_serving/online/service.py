"""What the routes of every protocol share: the served models, the online config, the
warehouse for key lookups, and the guard of each scope."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coverage_serving.config import OnlineConfig
from coverage_serving.errors import RegistryError
from coverage_serving.online.auth import Keyring, Scope
from coverage_serving.online.guard import Guard, guard
from coverage_serving.online.ratelimit import RateLimiter
from coverage_serving.online.served import ServedModel
from coverage_serving.warehouse import Warehouse


@dataclass(frozen=True)
class Service:
    served: dict[str, ServedModel]
    online: OnlineConfig
    warehouse: Warehouse
    keyring: Keyring | None
    limiter: RateLimiter
    # Per model: rows of a foreign protocol's body, each checked as /v1 checks a row.
    row_checks: dict[str, Callable[[object], list[dict[str, Any]]]]

    def validate_rows(self, chosen: ServedModel, rows: object) -> list[dict[str, Any]]:
        return self.row_checks[chosen.config.name](rows)

    def model(self, name: str) -> ServedModel:
        if name not in self.served:
            raise self.not_configured(name)
        return self.served[name]

    def not_configured(self, name: str) -> RegistryError:
        return RegistryError(f"model {name!r} is not configured; configured: {sorted(self.served)}")

    def default_model(self) -> ServedModel:
        """The model a route without a model name scores (MLflow's /invocations)."""
        if self.online.default_model is not None:
            return self.served[self.online.default_model]
        if len(self.served) == 1:
            return next(iter(self.served.values()))
        raise RegistryError(
            f"no default model: set online.default_model, or call /models/{{model}}/invocations "
            f"with one of {sorted(self.served)}"
        )

    def ready(self) -> bool:
        return all(model.status().version is not None for model in self.served.values())

    def guard(self, scope: Scope, doing: str) -> Guard:
        return guard(self.keyring, self.limiter, scope, doing)
