"""The Open Inference Protocol (KServe v2) over REST, so KServe and Triton clients work: server
and model health, model metadata, and inference with named input tensors, one per key or
feature column (BYTES for text, INT64 for integers, FP64 for numbers; shape [rows] or
[rows, 1]), JSON-encoded (the binary tensor extension is not supported). Market, month and
version are request parameters, or the version is the path's /versions/{version}. The answer
has one FP64 output tensor per prediction column, and the lineage as parameters."""

from typing import Annotated, Any

import mlflow
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.responses import Response

from coverage_serving.config import ColumnType, ModelConfig
from coverage_serving.errors import ServingError
from coverage_serving.online import wire
from coverage_serving.online.auth import Client, Scope
from coverage_serving.online.protocols.parameters import ParametersReader
from coverage_serving.online.scoring import json_response, require_row_count, score, version_for
from coverage_serving.online.served import ServedModel, columns_of_json_rows
from coverage_serving.online.service import Service

DATATYPES = {ColumnType.STRING: "BYTES", ColumnType.INT: "INT64", ColumnType.FLOAT: "FP64"}
BINARY_HEADER = "inference-header-content-length"
OUR_PARAMETERS = frozenset({"market", "month", "version"})


class BinaryTensorsError(ServingError):
    """A request using the binary tensor data extension, which this server does not speak."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class InputTensor(BaseModel):
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InputTensor] = Field(min_length=1)
    outputs: list[_Open] | None = None


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any]
    outputs: list[OutputTensor]


# Read by hand, not as a FastAPI body: Triton's client sends JSON without saying so in its
# Content-Type, and FastAPI parses only bodies labelled JSON.
REQUEST_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {
                            "type": "object",
                            "description": "market, month (YYYY-MM-01) and version, optional "
                            "where the model serves one market, this month, the served version",
                        },
                        "inputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name", "shape", "datatype", "data"],
                            },
                        },
                        "outputs": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    }
}
_REQUEST = TypeAdapter(InferenceRequest)


async def inference_request(request: Request, chosen: ServedModel) -> InferenceRequest:
    if BINARY_HEADER in request.headers:
        raise BinaryTensorsError(
            "the binary tensor data extension is not supported: send tensors as JSON data "
            "(tritonclient: binary_data=False)"
        )
    try:
        return _REQUEST.validate_json(await request.body())
    except ValidationError as err:
        problems = [
            {"field": wire.location(e["loc"]) or "body", "problem": e["msg"]}
            for e in err.errors(include_url=False)
        ]
        raise wire.InvalidRequestError(chosen.config.name, problems) from None


def metadata(model: ModelConfig, version: int | None) -> dict[str, Any]:
    columns = {**model.keys, **model.features}
    return {
        "name": model.name,
        "versions": [] if version is None else [str(version)],
        "platform": f"mlflow_{mlflow.__version__}",
        "inputs": [
            {"name": name, "datatype": DATATYPES[spec.type], "shape": [-1]}
            for name, spec in columns.items()
        ],
        "outputs": [
            {"name": name, "datatype": "FP64", "shape": [-1]} for name in model.prediction_columns
        ],
    }


def rows_of_tensors(model: ModelConfig, tensors: list[InputTensor]) -> list[dict[str, Any]]:
    """One row per element: each tensor is a column. Tensors must be named like the model's
    columns, of its datatype and of one length; other tensors are refused, not ignored."""
    columns = {**model.keys, **model.features}
    problems = []
    for tensor in tensors:
        where = f"inputs[{tensor.name}]"
        if tensor.name not in columns:
            problems.append({"field": where, "problem": f"is not a column of {sorted(columns)}"})
        elif tensor.datatype != DATATYPES[columns[tensor.name].type]:
            wanted = DATATYPES[columns[tensor.name].type]
            problems.append(
                {"field": where, "problem": f"datatype {tensor.datatype}, not {wanted}"}
            )
        elif not _one_column(tensor.shape, len(tensor.data)):
            problems.append(
                {
                    "field": where,
                    "problem": f"shape {tensor.shape} for {len(tensor.data)} values; give "
                    "[rows] or [rows, 1]",
                }
            )
    lengths = {len(tensor.data) for tensor in tensors}
    if not problems and len(lengths) > 1:
        problems.append({"field": "inputs", "problem": f"tensors of lengths {sorted(lengths)}"})
    if problems:
        raise wire.InvalidRequestError(model.name, problems)
    names = [tensor.name for tensor in tensors]
    return [
        dict(zip(names, row, strict=True)) for row in zip(*(t.data for t in tensors), strict=True)
    ]


def _one_column(shape: list[int], values: int) -> bool:
    return shape in ([values], [values, 1])


def oip_router(service: Service) -> APIRouter:
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe v2)"])
    readers = {name: ParametersReader(model.config) for name, model in service.served.items()}
    predicting = Depends(service.guard(Scope.PREDICT, "score"))
    ModelName = Annotated[str, Path(json_schema_extra={"enum": sorted(service.served)})]

    @router.get("")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "coverage_serving", "version": mlflow.__version__, "extensions": []}

    @router.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready", responses={503: {"description": "A model has no version yet"}})
    async def ready() -> Response:
        is_ready = service.ready()
        return json_response({"ready": is_ready}, status=200 if is_ready else 503)

    @router.get("/models/{model}", response_model=ModelMetadata, responses=wire.ERRORS)
    async def model_metadata(model: ModelName) -> Response:
        chosen = service.model(model)
        return json_response(metadata(chosen.config, chosen.status().version))

    @router.get("/models/{model}/ready", responses=wire.ERRORS)
    async def model_ready(model: ModelName) -> Response:
        is_ready = service.model(model).status().version is not None
        return json_response({"name": model, "ready": is_ready}, status=200 if is_ready else 503)

    async def infer(
        request: Request,
        chosen: ServedModel,
        client: Client,
        body: InferenceRequest,
        path_version: int | None,
    ) -> Response:
        # The protocol's own parameters (timeout, binary_data_output, ...) are not ours.
        ours = {k: v for k, v in (body.parameters or {}).items() if k in OUR_PARAMETERS}
        parameters = readers[chosen.config.name].read(ours, "parameters")
        rows = rows_of_tensors(chosen.config, body.inputs)
        require_row_count(chosen.config, len(rows), service.online.max_rows)
        features = columns_of_json_rows(chosen.config, service.validate_rows(chosen, rows))
        version = path_version if path_version is not None else parameters.version
        loaded = await version_for(request, chosen, client, version)
        scored = score(request, chosen, loaded, parameters.partition, features)
        return json_response(
            {
                "model_name": chosen.config.name,
                "model_version": str(scored.version),
                "id": body.id or scored.request_id,
                "parameters": {
                    "request_id": scored.request_id,
                    "market": parameters.partition.market,
                    "month": parameters.partition.month.isoformat(),
                    "registered_model": loaded.ref.name,
                    "model_alias": loaded.ref.alias,
                    "model_run_id": loaded.ref.run_id,
                },
                "outputs": [
                    {
                        "name": name,
                        "shape": [scored.row_count],
                        "datatype": "FP64",
                        "data": scored.column(name),
                    }
                    for name in chosen.config.prediction_columns
                ],
            }
        )

    documented: dict[str, Any] = {
        "response_model": InferenceResponse,
        "responses": wire.ERRORS,
        "openapi_extra": REQUEST_SCHEMA,
    }

    @router.post("/models/{model}/infer", **documented)
    async def model_infer(
        model: ModelName, request: Request, client: Client = predicting
    ) -> Response:
        chosen = service.model(model)
        return await infer(request, chosen, client, await inference_request(request, chosen), None)

    @router.post("/models/{model}/versions/{version}/infer", **documented)
    async def version_infer(
        model: ModelName,
        version: Annotated[int, Path(ge=1, le=2**31 - 1)],
        request: Request,
        client: Client = predicting,
    ) -> Response:
        chosen = service.model(model)
        body = await inference_request(request, chosen)
        return await infer(request, chosen, client, body, version)

    return router
