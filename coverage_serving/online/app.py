"""The on-demand HTTP endpoint: FastAPI routes over online.served, errors as JSON bodies."""

import logging
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Annotated, Any, NoReturn

from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from threadpoolctl import threadpool_limits

from coverage_serving.config import OnlineConfig, ServingConfig
from coverage_serving.core.contracts import ContractViolation
from coverage_serving.core.served_version import HeldByGateError
from coverage_serving.errors import (
    EmptyPartitionError,
    RegistryError,
    RegistryUnavailableError,
    ServingError,
    UnservableModelError,
)
from coverage_serving.online import wire
from coverage_serving.online.audit import AuditLog
from coverage_serving.online.auth import (
    Client,
    Keyring,
    NotAuthenticatedError,
    NotPermittedError,
    Scope,
)
from coverage_serving.online.body_limit import BodyLimit
from coverage_serving.online.oidc import ProviderUnavailableError
from coverage_serving.online.protocols.mlflow import (
    BadBodyError,
    UnsupportedMediaTypeError,
    mlflow_router,
)
from coverage_serving.online.protocols.oip import BinaryTensorsError, oip_router
from coverage_serving.online.ratelimit import RateLimitedError, RateLimiter
from coverage_serving.online.scoring import (
    TooManyRowsError,
    json_response,
    require_row_count,
    score,
    version_for,
)
from coverage_serving.online.served import (
    NotReadyError,
    ServedModel,
    Status,
    UnknownKeyError,
    columns_of_json_rows,
    latest_features,
)
from coverage_serving.online.service import Service
from coverage_serving.partition import Partition
from coverage_serving.registry import ModelRegistry, redact
from coverage_serving.warehouse import Warehouse

log = logging.getLogger(__name__)


# Most specific first: the first class an error is an instance of gives its status.
STATUS_OF_ERROR: list[tuple[type[ServingError], int]] = [
    (NotAuthenticatedError, 401),
    (NotPermittedError, 403),
    (HeldByGateError, 403),
    (RateLimitedError, 429),
    (TooManyRowsError, 413),
    (BadBodyError, 400),
    (UnsupportedMediaTypeError, 415),
    (BinaryTensorsError, 415),
    (wire.InvalidRequestError, 422),
    (ContractViolation, 422),
    (EmptyPartitionError, 422),
    (UnservableModelError, 422),
    (UnknownKeyError, 404),
    (RegistryUnavailableError, 503),
    (ProviderUnavailableError, 503),
    (NotReadyError, 503),
    (RegistryError, 404),  # no such model, alias or version
    (ServingError, 500),  # a model or warehouse fault; its message is written for users
]


def _headers_of(err: ServingError) -> dict[str, str] | None:
    if isinstance(err, NotAuthenticatedError):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(err, RateLimitedError):
        return {"Retry-After": str(err.retry_after)}
    return None


def build_app(
    config: ServingConfig,
    registry: ModelRegistry,
    warehouse: Warehouse,
    keyring: Keyring | None = None,
) -> FastAPI:
    """The endpoint of every configured model; `keyring` None lets any caller do anything (the
    server allows that only on a loopback address, or with --insecure)."""
    served = {name: ServedModel(model, registry) for name, model in config.models.items()}
    online = config.online
    service = Service(
        served=served,
        online=online,
        warehouse=warehouse,
        keyring=keyring,
        limiter=RateLimiter(online.rate_limit, online.rate_limit_storage),
        row_checks={name: wire.rows_validator(model) for name, model in config.models.items()},
    )

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
        # One thread per model call, on the thread that scores (the event loop's): a request's
        # few rows gain nothing from a pool, and waking OpenMP's threads (LightGBM's) between
        # requests cost more than the prediction. A server scales with --workers instead. It
        # covers the libraries the models loaded above; restored when the server stops.
        with threadpool_limits(limits=1):
            yield
        stop.set()
        refresher.join(timeout=online.refresh_seconds)

    app = FastAPI(
        title="coverage_serving on-demand scoring",
        description="The batch tables' registered models, one request at a time: the same "
        "alias, input contract, scoring core, output contract and columns.",
        lifespan=lifespan,
    )
    # Outermost first: every request is audited, even one refused for its size.
    app.add_middleware(BodyLimit, limit=online.max_body_bytes)
    app.add_middleware(AuditLog)
    # The model each predict route serves, for the errors FastAPI finds before a route runs.
    model_of_path = {_predict_path(name): name for name in served}

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError) -> JSONResponse:
        status = next(code for kind, code in STATUS_OF_ERROR if isinstance(err, kind))
        body = {**err.metadata(), "message": redact(str(err))}
        return JSONResponse(_shaped(request, body), status_code=status, headers=_headers_of(err))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        model = model_of_path.get(request.url.path)
        invalid = wire.InvalidRequestError(model, wire.body_problems(err.errors()))
        return _error(422, _shaped(request, invalid.metadata()))

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

    listing = Depends(service.guard(Scope.PREDICT, "list the models"))
    predicting = Depends(service.guard(Scope.PREDICT, "score"))
    refreshing = Depends(service.guard(Scope.ADMIN, "refresh a model"))

    @app.get("/v1/models", dependencies=[listing], responses=wire.ERRORS)
    def list_models() -> list[Status]:
        return [model.status() for model in served.values()]

    # Documented as the configured names; any other name is answered with a 404 naming it.
    ModelName = Annotated[str, Path(json_schema_extra={"enum": sorted(served)})]

    @app.post("/v1/models/{model}/refresh", dependencies=[refreshing], responses=wire.ERRORS)
    def refresh(model: ModelName) -> Status:
        """Follow the alias now instead of at the next refresh interval (it asks the registry:
        a worker thread, not the event loop)."""
        chosen = service.model(model)
        chosen.refresh()
        return chosen.status()

    async def predict(
        request: Request,
        chosen: ServedModel,
        client: Client,
        body: wire.KeyRequest | wire.RowsRequest,
    ) -> Response:
        if isinstance(body, wire.RowsRequest):
            require_row_count(chosen.config, len(body.rows), online.max_rows)
        loaded = await version_for(request, chosen, client, body.version)
        if isinstance(body, wire.KeyRequest):
            # A warehouse query: off the event loop.
            partition, features = await run_in_threadpool(
                latest_features, warehouse, chosen.config, body.market, body.key.model_dump()
            )
        else:
            partition = Partition(body.market, body.month)
            features = columns_of_json_rows(chosen.config, [row.model_dump() for row in body.rows])
        scored = score(request, chosen, loaded, partition, features)
        return json_response(
            {
                "model": chosen.config.name,
                "model_version": scored.version,
                "request_id": scored.request_id,
                "rows": scored.records(),
            }
        )

    def add_predict_route(chosen: ServedModel) -> None:
        body_type = wire.predict_request(chosen.config, online.max_rows)

        # The response model documents the answer; the route returns it already encoded.
        @app.post(
            _predict_path(chosen.config.name),
            response_model=wire.predict_response(chosen.config),
            responses=wire.ERRORS,
            summary=f"Score with model {chosen.config.name!r}",
            operation_id=f"predict_{chosen.config.name}",
        )
        async def predict_route(
            body: body_type, request: Request, client: Client = predicting
        ) -> Response:
            return await predict(request, chosen, client, body)

    # A route per model: each has its own body, checked against the model's config.
    for chosen in served.values():
        add_predict_route(chosen)

    @app.post("/v1/models/{model}/predict", include_in_schema=False, response_model=None)
    def predict_unconfigured(model: str) -> NoReturn:
        raise service.not_configured(model)

    app.include_router(mlflow_router(service))
    app.include_router(oip_router(service))
    return app


def _predict_path(model: str) -> str:
    return f"/v1/models/{model}/predict"


def _keep_refreshing(
    served: dict[str, ServedModel], online: OnlineConfig, stop: threading.Event
) -> None:
    while not stop.wait(online.refresh_seconds):
        for model in served.values():
            model.refresh()


def _shaped(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The Open Inference Protocol's clients show only "error": there, it has the message too."""
    if request.url.path.startswith("/v2/"):
        return {**body, "error": f"{body['error']}: {body['message']}"}
    return body


def _error(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)
