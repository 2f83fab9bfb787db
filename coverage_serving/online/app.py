"""The on-demand HTTP endpoint: FastAPI routes over online.served, errors as JSON bodies."""

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from coverage_serving.config import OnlineConfig, ServingConfig
from coverage_serving.core.contracts import ContractViolation
from coverage_serving.errors import (
    EmptyPartitionError,
    RegistryError,
    RegistryUnavailableError,
    ServingError,
    UnservableModelError,
)
from coverage_serving.online.served import (
    NotReadyError,
    ServedModel,
    UnknownKeyError,
    frame_of_json_rows,
    latest_features,
    score_rows,
)
from coverage_serving.partition import MARKET_CODE, Partition
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


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    market: str = Field(pattern=f"^{MARKET_CODE.pattern}$")
    month: date | None = Field(
        default=None, description="First day of the month the rows belong to; needed with rows"
    )
    rows: list[dict[str, Any]] | None = Field(
        default=None, description="Feature rows: key column(s) and every configured feature"
    )
    key: dict[str, str | int] | None = Field(
        default=None, description="Score this key's latest feature row from the warehouse"
    )
    version: int | None = Field(
        default=None, ge=1, description="Score with this version instead of the alias's"
    )

    @model_validator(mode="after")
    def _rows_or_key(self) -> "PredictRequest":
        if (self.rows is None) == (self.key is None):
            raise ValueError("give either rows or key, not both and not neither")
        if self.rows is not None and self.month is None:
            raise ValueError("rows need the month they belong to")
        if self.month is not None and self.month.day != 1:
            raise ValueError(f"month {self.month} is not the first day of a month")
        return self


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

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError) -> JSONResponse:
        status = next(code for kind, code in STATUS_OF_ERROR if isinstance(err, kind))
        return _error(status, {**err.metadata(), "message": redact(str(err))})

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        reference = uuid.uuid4().hex
        log.exception("internal error %s on %s", reference, request.url.path)
        return _error(500, {"error": "InternalError", "message": f"internal error {reference}"})

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        statuses = [model.status().__dict__ for model in served.values()]
        ready = all(status["version"] is not None for status in statuses)
        return JSONResponse({"ready": ready, "models": statuses}, status_code=200 if ready else 503)

    @app.get("/v1/models")
    def list_models() -> list[dict[str, Any]]:
        return [model.status().__dict__ for model in served.values()]

    @app.post("/v1/models/{model}/refresh")
    def refresh(model: str) -> dict[str, Any]:
        """Follow the alias now instead of at the next refresh interval."""
        chosen = _served(served, model)
        chosen.refresh()
        return chosen.status().__dict__

    @app.post("/v1/models/{model}/predict")
    def predict(model: str, request: PredictRequest) -> dict[str, Any]:
        chosen = _served(served, model)
        if request.rows is not None and len(request.rows) > online.max_rows:
            raise TooManyRowsError(
                f"{len(request.rows)} rows in one request; at most {online.max_rows} "
                "(online.max_rows)"
            )
        # One LoadedModel for the whole request: a version switch cannot split it.
        loaded = chosen.current() if request.version is None else chosen.pinned(request.version)
        if request.key is not None:
            partition, features = latest_features(
                warehouse, chosen.config, request.market, request.key
            )
        else:
            assert request.month is not None and request.rows is not None  # the validator's
            partition = Partition(request.market, request.month)
            features = frame_of_json_rows(chosen.config, request.rows)
        request_id = uuid.uuid4().hex
        scored = score_rows(chosen.config, loaded, partition, features, request_id)
        return {
            "model": model,
            "model_version": loaded.ref.version,
            "request_id": request_id,
            "rows": _records(scored.drop(columns=["dagster_run_id"])),
        }

    return app


def _served(served: dict[str, ServedModel], model: str) -> ServedModel:
    if model not in served:
        raise RegistryError(f"model {model!r} is not configured; configured: {sorted(served)}")
    return served[model]


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
