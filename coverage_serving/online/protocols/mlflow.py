"""MLflow's scoring protocol (what `mlflow models serve` answers), so MLflow's own clients work:
/ping, /health, /version and POST /invocations with a JSON body (dataframe_split,
dataframe_records, instances or inputs, and params) or CSV.

One server hosts several models, MLflow's protocol names none: /invocations scores
online.default_model (or the only model), /models/{model}/invocations a named one. Market,
month and version are `params` of the JSON body, or query parameters (CSV). The answer is
MLflow's {"predictions": [...]}: a number per row for a model with one prediction column, an
object per row otherwise; the version and request id that /v1 puts in its body are headers."""

import csv
import io
from typing import Annotated, Any

import mlflow
import orjson
from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import PlainTextResponse, Response

from coverage_serving.config import ColumnType, ModelConfig
from coverage_serving.errors import ServingError
from coverage_serving.online import wire
from coverage_serving.online.auth import Client, Scope
from coverage_serving.online.protocols.parameters import ParametersReader, query_parameters
from coverage_serving.online.scoring import (
    json_response,
    lineage_headers,
    require_row_count,
    score,
    version_for,
)
from coverage_serving.online.served import ServedModel, columns_of_json_rows
from coverage_serving.online.service import Service

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
JSON, CSV = "application/json", "text/csv"


class UnsupportedMediaTypeError(ServingError):
    """A body neither JSON nor CSV."""


class BadBodyError(ServingError):
    """A body that does not parse as the JSON or CSV it says it is."""


# Documented loosely: which rows are valid depends on the model, and /v1's schema states it.
BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "description": "Exactly one of dataframe_split, dataframe_records, "
                    "instances or inputs; params may hold market, month and version",
                    "properties": {
                        "dataframe_split": {"type": "object"},
                        "dataframe_records": {"type": "array", "items": {"type": "object"}},
                        "instances": {"type": "array", "items": {"type": "object"}},
                        "inputs": {"type": "array", "items": {"type": "object"}},
                        "params": {"type": "object"},
                    },
                }
            },
            CSV: {"schema": {"type": "string", "description": "A header row, then feature rows"}},
        },
    }
}


def rows_of_json(body: Any) -> tuple[Any, dict[str, Any]]:
    """The rows of an MLflow JSON body, as objects, and its params."""
    if not isinstance(body, dict):
        raise BadBodyError("the body is not a JSON object")
    given = [name for name in FORMATS if name in body]
    if len(given) != 1:
        raise BadBodyError(f"give exactly one of {', '.join(FORMATS)}; found {given or 'none'}")
    unknown = sorted(set(body) - {*FORMATS, "params"})
    if unknown:
        raise BadBodyError(f"unknown field(s) {unknown}; expected one of {FORMATS} and params")
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise BadBodyError("params is not a JSON object")
    [kind] = given
    data = body[kind]
    if kind == "dataframe_split":
        return _split_rows(data), params
    if isinstance(data, dict):  # columnar instances/inputs: {"column": [values]}
        return _columnar_rows(data), params
    return data, params


def _split_rows(split: Any) -> list[Any]:
    if not isinstance(split, dict) or not isinstance(split.get("columns"), list):
        raise BadBodyError("dataframe_split needs columns (a list of names) and data (rows)")
    columns, data = split["columns"], split.get("data")
    if not isinstance(data, list) or not all(
        isinstance(row, list) and len(row) == len(columns) for row in data
    ):
        raise BadBodyError(f"dataframe_split.data: give rows of {len(columns)} values each")
    return [dict(zip(columns, row, strict=True)) for row in data]


def _columnar_rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(lengths) != 1 or not all(isinstance(v, list) for v in columns.values()):
        raise BadBodyError("columnar inputs: give each column as a list, all of one length")
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def rows_of_csv(model: ModelConfig, text: str) -> list[dict[str, Any]]:
    """CSV rows with each configured column's text as its type (an empty field is null); other
    columns are left as text, to be ignored as /v1 ignores them."""
    reader = csv.DictReader(io.StringIO(text))
    types = {name: spec.type for name, spec in {**model.keys, **model.features}.items()}
    try:
        return [_typed_row(types, number, row, model) for number, row in enumerate(reader)]
    except csv.Error as err:
        raise BadBodyError(f"the body is not CSV: {err}") from None


def _typed_row(
    types: dict[str, ColumnType], number: int, row: dict[Any, Any], model: ModelConfig
) -> dict[str, Any]:
    try:
        if None in row:  # csv.DictReader's key for fields beyond the header's
            raise ValueError("has more fields than the header")
        return {name: _typed(types.get(name), value) for name, value in row.items()}
    except ValueError as err:
        problem = {"field": f"rows[{number}]", "problem": str(err)}
        raise wire.InvalidRequestError(model.name, [problem]) from None


def _typed(kind: ColumnType | None, text: str | None) -> Any:
    if text is None:
        raise ValueError("has fewer fields than the header")
    if kind is None or kind == ColumnType.STRING:
        return text if text or kind is None else None
    if not text:
        return None
    try:
        return int(text) if kind == ColumnType.INT else float(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a{'n integer' if kind == ColumnType.INT else ' number'}"
        ) from None


def predictions_body(model: ModelConfig, records: list[dict[str, Any]]) -> dict[str, Any]:
    columns = model.prediction_columns
    if len(columns) == 1:
        return {"predictions": [row[columns[0]] for row in records]}
    return {"predictions": [{name: row[name] for name in columns} for row in records]}


def mlflow_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["MLflow scoring protocol"])
    readers = {name: ParametersReader(model.config) for name, model in service.served.items()}
    predicting = Depends(service.guard(Scope.PREDICT, "score"))
    max_rows = service.online.max_rows

    @router.get("/ping", response_class=PlainTextResponse)
    @router.get("/health", response_class=PlainTextResponse)
    async def ping() -> Response:
        """200 once every model has a loaded version, as MLflow's server answers when its
        model is loaded."""
        ready = service.ready()
        return PlainTextResponse("\n" if ready else "not ready\n", 200 if ready else 503)

    @router.get("/version", response_class=PlainTextResponse)
    async def version() -> str:
        """The MLflow version the models are served with."""
        return mlflow.__version__

    async def invoke(request: Request, chosen: ServedModel, client: Client) -> Response:
        body = await request.body()
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media == JSON:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError as err:
                raise BadBodyError(f"the body is not JSON: {err}") from None
            rows, params = rows_of_json(parsed)
            where = "params"
        elif media == CSV:
            rows = rows_of_csv(chosen.config, body.decode("utf-8", errors="replace"))
            params, where = query_parameters(request.query_params), "query"
        else:
            raise UnsupportedMediaTypeError(
                f"content type {media or 'none'!r}: send {JSON} or {CSV}"
            )
        parameters = readers[chosen.config.name].read(params, where)
        if isinstance(rows, list):
            require_row_count(chosen.config, len(rows), max_rows)
        features = columns_of_json_rows(chosen.config, service.validate_rows(chosen, rows))
        loaded = await version_for(request, chosen, client, parameters.version)
        scored = score(request, chosen, loaded, parameters.partition, features)
        return json_response(
            predictions_body(chosen.config, scored.records()), lineage_headers(scored)
        )

    @router.post("/invocations", openapi_extra=BODY_SCHEMA, responses=wire.ERRORS)
    async def invocations(request: Request, client: Client = predicting) -> Response:
        """Score with online.default_model (or the only configured model)."""
        return await invoke(request, service.default_model(), client)

    ModelName = Annotated[str, Path(json_schema_extra={"enum": sorted(service.served)})]

    @router.post("/models/{model}/invocations", openapi_extra=BODY_SCHEMA, responses=wire.ERRORS)
    async def model_invocations(
        model: ModelName, request: Request, client: Client = predicting
    ) -> Response:
        """Score with the named model."""
        return await invoke(request, service.model(model), client)

    return router
