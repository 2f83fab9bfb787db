"""What every protocol does once it has a request's feature rows: choose the version (the served
one, or one the caller may pin), score through the input contract, the model and the output
contract with lineage (online.served), note the audit fields, and hand back the batch table's
rows. /v1, MLflow's /invocations and the Open Inference Protocol differ only in their bodies."""

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson
import pandas as pd
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from coverage_serving.config import ModelConfig
from coverage_serving.errors import ServingError
from coverage_serving.lineage import RUN_ID_COLUMN, Lineage
from coverage_serving.online.audit import record
from coverage_serving.online.auth import Client, Scope
from coverage_serving.online.served import ServedModel, score_rows
from coverage_serving.online.wire import InvalidRequestError
from coverage_serving.partition import Partition
from coverage_serving.registry import LoadedModel


class TooManyRowsError(ServingError):
    """A request with more feature rows than online.max_rows."""


@dataclass(frozen=True)
class Scored:
    config: ModelConfig
    lineage: Lineage  # the request id as the run id
    rows: pd.DataFrame  # the prediction table's columns but lineage

    @property
    def version(self) -> int:
        return self.lineage.model_version

    @property
    def request_id(self) -> str:
        return self.lineage.run_id

    def column(self, name: str) -> list[Any]:
        return self.rows[name].tolist()

    def records(self) -> list[dict[str, Any]]:
        """The rows as JSON-ready dicts, the lineage (without the run id) after the prediction
        table's other columns: floats exactly as computed, the month and scored_at in ISO 8601.
        Column lists from numpy, not pandas' to_dict or Series methods: for a row or a few
        those cost more than the model."""
        lineage = self.lineage.columns()
        del lineage[RUN_ID_COLUMN]
        lineage["scored_at"] = self.lineage.scored_at.isoformat()
        columns = {name: self._json_values(name) for name in self.rows.columns}
        return [
            dict(zip(columns, values, strict=True)) | lineage
            for values in zip(*columns.values(), strict=True)
        ]

    def _json_values(self, name: str) -> list[Any]:
        values = self.rows[name]
        if name == "month":
            return [date.isoformat(month.date()) for month in values]
        array = values.to_numpy()
        missing = pd.isna(array)
        if not missing.any():
            return array.tolist()
        listed = array.tolist()
        return [None if absent else value for value, absent in zip(listed, missing, strict=True)]


def require_row_count(model: ModelConfig, rows: int, max_rows: int) -> None:
    if rows == 0:
        problem = {"field": "rows", "problem": "no rows: give at least one feature row"}
        raise InvalidRequestError(model.name, [problem])
    if rows > max_rows:
        raise TooManyRowsError(f"{rows} rows in one request; at most {max_rows} (online.max_rows)")


async def version_for(
    request: Request, chosen: ServedModel, client: Client, version: int | None
) -> LoadedModel:
    """One LoadedModel for the whole request, so a version switch cannot split it: the served
    version, or the one the caller names if it holds the pin scope and the served-version
    decision allows it."""
    record(request, model=chosen.config.name)
    if version is None:
        return chosen.current()
    client.require(Scope.PIN, f"score with version {version} instead of the served one")
    # The registry is asked at most once per version between refreshes, off the event loop.
    return chosen.pinned(version) or await run_in_threadpool(chosen.pin, version)


def score(
    request: Request,
    chosen: ServedModel,
    loaded: LoadedModel,
    partition: Partition,
    features: pd.DataFrame,
) -> Scored:
    """Score feature rows already in their column types. Runs on the event loop: for the few
    rows of an on-demand request a thread hop costs more than the scoring."""
    lineage = Lineage.of(loaded.ref, uuid.uuid4().hex)
    record(request, version=loaded.ref.version, rows=len(features), request_id=lineage.run_id)
    rows = score_rows(chosen.config, loaded, partition, features)
    return Scored(chosen.config, lineage, rows)


def json_response(body: Any, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    # orjson writes a float as its shortest round-trip repr, as json does, in a tenth of the time.
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def lineage_headers(scored: Scored) -> dict[str, str]:
    """For protocols whose bodies have no place for lineage (MLflow's)."""
    return {
        "X-Model-Name": scored.config.name,
        "X-Model-Version": str(scored.version),
        "X-Request-Id": scored.request_id,
    }
