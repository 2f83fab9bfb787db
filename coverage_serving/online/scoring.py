"""What every protocol does once it has a request's feature rows: choose the version (the served
one, or one the caller may pin), score through the input contract, the model and the output
contract with lineage (online.served), note the audit fields, and hand back the batch table's
rows. /v1, MLflow's /invocations and the Open Inference Protocol differ only in their bodies."""

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from coverage_serving.config import ModelConfig
from coverage_serving.core.scoring import Columns
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
    rows: Columns  # the prediction table's columns but lineage

    @property
    def version(self) -> int:
        return self.lineage.model_version

    @property
    def request_id(self) -> str:
        return self.lineage.run_id

    @property
    def row_count(self) -> int:
        return len(self.rows[self.config.key_columns[0]])

    def column(self, name: str) -> list[Any]:
        return _json_values(self.rows[name])

    def records(self) -> list[dict[str, Any]]:
        """The rows as JSON-ready dicts, the lineage (without the run id) after the prediction
        table's other columns: floats exactly as computed, the month and scored_at in ISO 8601."""
        lineage = self.lineage.columns()
        del lineage[RUN_ID_COLUMN]
        lineage["scored_at"] = self.lineage.scored_at.isoformat()
        columns = {name: _json_values(values) for name, values in self.rows.items()}
        return [
            dict(zip(columns, values, strict=True)) | lineage
            for values in zip(*columns.values(), strict=True)
        ]


def _json_values(values: np.ndarray) -> list[Any]:
    if values.dtype.kind == "M":  # the month
        return np.datetime_as_string(values, unit="D").tolist()
    missing = pd.isna(values)
    if not missing.any():
        return values.tolist()
    listed = values.tolist()
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
    features: Columns,
) -> Scored:
    """Score feature rows already in their column types. Runs on the event loop: for the few
    rows of an on-demand request a thread hop costs more than the scoring."""
    lineage = Lineage.of(loaded.ref, uuid.uuid4().hex)
    count = len(features[chosen.config.key_columns[0]])
    record(request, version=loaded.ref.version, rows=count, request_id=lineage.run_id)
    return Scored(chosen.config, lineage, score_rows(chosen.config, loaded, partition, features))


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
