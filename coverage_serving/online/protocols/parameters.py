"""The request parameters that MLflow's and the Open Inference Protocol's bodies have no field
for (market, month, version): given as parameters in the body, or in the URL's query string."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from coverage_serving.config import ModelConfig
from coverage_serving.online import wire
from coverage_serving.partition import Partition


@dataclass(frozen=True)
class Parameters:
    partition: Partition
    version: int | None


class ParametersReader:
    """Market (needed unless the model serves one market), month (this month's first day by
    default: rows sent on demand are as of now) and version (the served one by default), each
    checked as /v1 checks it."""

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self._accepted = wire.parameters_model(model)

    def read(self, given: Mapping[str, Any], where: str) -> Parameters:
        try:
            parsed = self._accepted.model_validate(dict(given))
        except ValidationError as err:
            problems = [
                {"field": f"{where}.{'.'.join(map(str, e['loc']))}", "problem": e["msg"]}
                for e in err.errors(include_url=False)
            ]
            raise wire.InvalidRequestError(self.model.name, problems) from None
        month = parsed.month or datetime.now(UTC).date().replace(day=1)
        return Parameters(Partition(parsed.market, month), parsed.version)


def query_parameters(query: Mapping[str, str]) -> dict[str, Any]:
    """Query string values as a JSON body would give them: a version is a number."""
    given: dict[str, Any] = dict(query)
    if given.get("version", "").isdigit():
        given["version"] = int(given["version"])
    return given
