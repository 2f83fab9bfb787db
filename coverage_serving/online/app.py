"""The on-demand HTTP endpoint: FastAPI routes over online.served, errors as JSON bodies."""

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from http import HTTPStatus
from typing import Annotated, Any, NoReturn

import pandas as pd
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from coverage_serving.config import OnlineConfig, ServingConfig
from coverage_serving.core.contracts import SAMPLE_SIZE, ContractViolation
from coverage_serving.errors import (
    EmptyPartitionError,
    RegistryError,
    RegistryUnavailableError,
    ServingError,
    UnservableModelError,
)
from coverage_serving.online import wire
from coverage_serving.online.served import (
    NotReadyError,
    ServedModel,
    Status,
    UnknownKeyError,
    frame_of_json_rows,
    latest_features,
    score_rows,
)
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry, redact
from coverage_serving.warehouse import Warehouse

log = logging.getLogger(__name__)


class TooManyRowsError(ServingError):
    """A request with more feature rows than online.max_rows."""


# Most specific first: the first class an error is an instance of gives its status.
STATUS_OF_ERROR: list[tuple[type[ServingError], int]] = [
    (TooManyRowsError, 413),
    (ContractViolation, 422),
    (EmptyPartitionError, 422),
    (UnservableModelError, 422),
    (UnknownKeyError, 404),
    (RegistryUnavailableError, 503),
    (NotReadyError, 503),
    (RegistryError, 404),  # no such model, alias or version
    (ServingError, 500),  # a model or warehouse fault; its message is written for users
]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": wire.ErrorBody, "description": description}
    for status, description in [
        (400, "A body that is not UTF-8 JSON, or that nests too deep"),
        (404, "No such model, key or version"),
        (411, "No Content-Length"),
        (413, "More rows than online.max_rows, or a body over online.max_body_bytes"),
        (422, "A field of the wrong type or shape, or feature rows that fail the input contract"),
        (503, "The registry does not answer, or the model has no loaded version yet"),
        (500, "A server fault: the message has a reference to the server log"),
    ]
}


def build_app(
    config: ServingConfig,
    registry: ModelRegistry,
    warehouse: Warehouse,
) -> FastAPI:
    served = {name: ServedModel(model, registry) for name, model in config.models.items()}
    online = config.online

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load every model before taking requests; a model whose registry does not answer yet
        # is retried by the refresher, and /readyz says so meanwhile.
        for model in served.values():
            model.refresh()
        stop = threading.Event()
        refresher = threading.Thread(
            target=_keep_refreshing, args=(served, online, stop), daemon=True
        )
        refresher.start()
        yield
        stop.set()
        refresher.join(timeout=online.refresh_seconds)

    app = FastAPI(
        title="coverage_serving on-demand scoring",
        description="The batch tables' registered models, one request at a time: the same "
        "alias, input contract, scoring core, output contract and columns.",
        lifespan=lifespan,
    )
    app.middleware("http")(_limit_body(online.max_body_bytes))
    # The model each predict route serves, for the errors FastAPI finds before a route runs.
    model_of_path = {_predict_path(name): name for name in served}

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError) -> JSONResponse:
        status = next(code for kind, code in STATUS_OF_ERROR if isinstance(err, kind))
        return _error(status, {**err.metadata(), "message": redact(str(err))})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        model = model_of_path.get(request.url.path)
        problems = wire.body_problems(err.errors())
        listed = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:SAMPLE_SIZE])
        more = f" (and {len(problems) - SAMPLE_SIZE} more)" if len(problems) > SAMPLE_SIZE else ""
        return _error(
            422,
            {
                "error": "InvalidRequest",
                "model": model,
                "message": f"invalid request for model {model!r}: {listed}{more}",
                "fields": problems,
            },
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        # FastAPI's own refusals (a body it cannot parse, an unknown path) shaped like ours.
        name = HTTPStatus(err.status_code).phrase.title().replace(" ", "")
        return JSONResponse(
            {"error": name, "message": str(err.detail)},
            status_code=err.status_code,
            headers=err.headers,
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex
        log.exception("internal error %s on %s", reference, request.url.path)
        return _error(500, {"error": "InternalError", "message": f"internal error {reference}"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=wire.Readiness,
        responses={503: {"model": wire.Readiness, "description": "A model has no version yet"}},
    )
    def readyz() -> JSONResponse:
        statuses = [model.status().__dict__ for model in served.values()]
        ready = all(status["version"] is not None for status in statuses)
        return JSONResponse({"ready": ready, "models": statuses}, status_code=200 if ready else 503)

    @app.get("/v1/models")
    def list_models() -> list[Status]:
        return [model.status() for model in served.values()]

    # Documented as the configured names; any other name is answered with a 404 naming it.
    ModelName = Annotated[str, Path(json_schema_extra={"enum": sorted(served)})]

    @app.post("/v1/models/{model}/refresh", responses={s: ERRORS[s] for s in (404, 422, 500)})
    def refresh(model: ModelName) -> Status:
        """Follow the alias now instead of at the next refresh interval."""
        chosen = _served(served, model)
        chosen.refresh()
        return chosen.status()

    def score(chosen: ServedModel, body: wire.KeyRequest | wire.RowsRequest) -> dict[str, Any]:
        if isinstance(body, wire.RowsRequest) and len(body.rows) > online.max_rows:
            raise TooManyRowsError(
                f"{len(body.rows)} rows in one request; at most {online.max_rows} (online.max_rows)"
            )
        # One LoadedModel for the whole request: a version switch cannot split it.
        loaded = chosen.current() if body.version is None else chosen.pinned(body.version)
        if isinstance(body, wire.KeyRequest):
            partition, features = latest_features(
                warehouse, chosen.config, body.market, body.key.model_dump()
            )
        else:
            partition = Partition(body.market, body.month)
            features = frame_of_json_rows(chosen.config, [row.model_dump() for row in body.rows])
        request_id = uuid.uuid4().hex
        scored = score_rows(chosen.config, loaded, partition, features, request_id)
        return {
            "model": chosen.config.name,
            "model_version": loaded.ref.version,
            "request_id": request_id,
            "rows": _records(scored.drop(columns=wire.NOT_RETURNED)),
        }

    def add_predict_route(chosen: ServedModel) -> None:
        body_type = wire.predict_request(chosen.config, online.max_rows)

        @app.post(
            _predict_path(chosen.config.name),
            response_model=wire.predict_response(chosen.config),
            responses=ERRORS,
            summary=f"Score with model {chosen.config.name!r}",
            operation_id=f"predict_{chosen.config.name}",
        )
        def predict(body: body_type) -> dict[str, Any]:
            return score(chosen, body)

    # A route per model: each has its own body, checked against the model's config.
    for chosen in served.values():
        add_predict_route(chosen)

    @app.post("/v1/models/{model}/predict", include_in_schema=False, response_model=None)
    def predict_unconfigured(model: str) -> NoReturn:
        raise _not_configured(served, model)

    return app


def _predict_path(model: str) -> str:
    return f"/v1/models/{model}/predict"


def _served(served: dict[str, ServedModel], model: str) -> ServedModel:
    if model not in served:
        raise _not_configured(served, model)
    return served[model]


def _not_configured(served: dict[str, ServedModel], model: str) -> RegistryError:
    return RegistryError(f"model {model!r} is not configured; configured: {sorted(served)}")


def _keep_refreshing(
    served: dict[str, ServedModel], online: OnlineConfig, stop: threading.Event
) -> None:
    while not stop.wait(online.refresh_seconds):
        for model in served.values():
            model.refresh()


def _limit_body(
    limit: int,
) -> Callable[[Request, Callable[[Request], Awaitable[Any]]], Awaitable[Any]]:
    # Starlette reads any body it is sent: refuse one over the limit from its declared length,
    # and one that declares none, before a byte of it is read.
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        if request.method in {"POST", "PUT", "PATCH"}:
            declared = request.headers.get("content-length")
            if declared is None:
                return _error(411, {"error": "LengthRequired", "message": "send Content-Length"})
            if not declared.isdigit() or int(declared) > limit:
                return _error(
                    413,
                    {
                        "error": "BodyTooLarge",
                        "message": f"request body of {declared} bytes; at most {limit} "
                        "(online.max_body_bytes)",
                    },
                )
        return await call_next(request)

    return limit_body


def _error(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: floats exactly as computed, dates and times in ISO 8601."""
    frame = frame.assign(
        month=frame["month"].dt.date.map(date.isoformat),
        scored_at=frame["scored_at"].map(pd.Timestamp.isoformat),
    )
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
