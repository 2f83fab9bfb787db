"""Typed shape of serving.yaml; every rule a config must satisfy lives here."""

import re
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import limits
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from coverage_serving.lineage import LINEAGE_COLUMN_NAMES
from coverage_serving.partition import MARKET_CODE
from coverage_serving.warehouse.base import REPLACED_COLUMNS

# Columns the platform adds to every prediction row, and to every row of its history; config
# columns may not reuse them.
PARTITION_COLUMNS = ("market", "month")
RESERVED_COLUMNS = frozenset(
    PARTITION_COLUMNS + LINEAGE_COLUMN_NAMES + tuple(c.name for c in REPLACED_COLUMNS)
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")
# Five cron fields (minute hour day month weekday); dagster checks the values themselves.
_CRON = re.compile(r"[0-9A-Za-z*,/\-]+( [0-9A-Za-z*,/\-]+){4}")


def _plain_identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a plain SQL identifier "
            "(letters, digits and underscores, not starting with a digit, at most 63 characters)"
        )
    return value


def _registry_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid registry name (letters, digits, '_', '.', '-')")
    return value


def _market_code(value: str) -> str:
    if not MARKET_CODE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid market code (letters, digits, '_', '-')")
    return value


def _first_of_month(value: date) -> date:
    if value.day != 1:
        raise ValueError(f"{value.isoformat()} is not the first day of a month")
    return value


def _cron(value: str) -> str:
    if not _CRON.fullmatch(value):
        raise ValueError(f"{value!r} is not a five-field cron expression (e.g. '0 6 2 * *')")
    return value


Identifier = Annotated[str, AfterValidator(_plain_identifier)]
RegistryName = Annotated[str, AfterValidator(_registry_name)]
MarketCode = Annotated[str, AfterValidator(_market_code)]
Month = Annotated[date, AfterValidator(_first_of_month)]
Cron = Annotated[str, AfterValidator(_cron)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnType(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"


class ColumnSpec(_Strict):
    type: ColumnType
    nullable: bool = False
    # For a categorical string column: the values the model was trained on. A value outside
    # them is invalid input (a model would score it as if it were none of them).
    values: list[str] | None = Field(default=None, min_length=1)
    description: str = ""

    @model_validator(mode="after")
    def _values_only_for_strings(self) -> "ColumnSpec":
        if self.values is not None and self.type != ColumnType.STRING:
            raise ValueError(f"'values' lists categories of a string column, not of {self.type}")
        return self


class PredictionSpec(_Strict):
    min: float | None = None
    max: float | None = None
    description: str = ""

    @model_validator(mode="after")
    def _range_is_ordered(self) -> "PredictionSpec":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class RegistryConfig(_Strict):
    # Loading a pickled (or skops) model runs code from the artifact: serving such models is a
    # trust decision about the registry, made here explicitly rather than by a default. The
    # compiled form of a tree model (core.compiled) is native code stored with the version:
    # loading it trusts the registry the same way, so this same switch governs it.
    allow_pickled_models: bool = False
    # A registry server that does not answer: retries with exponential backoff, each request
    # bounded by the timeout, then a clear failure (MLflow's own defaults wait minutes).
    request_retries: int = Field(default=3, ge=0, le=10)
    request_backoff_seconds: int = Field(default=1, ge=0, le=30)  # MLflow takes whole seconds
    # 4 attempts of 10 s and their backoff stay under the 60 s a sensor tick may take.
    request_timeout_seconds: int = Field(default=10, ge=1, le=600)


class InvalidRows(StrEnum):
    FAIL = "fail"  # any invalid feature row fails the partition; nothing is written
    QUARANTINE = "quarantine"  # score the valid rows, write the invalid ones to <output>_rejected


class UnmatchedMarkets(StrEnum):
    # Source rows whose market is none of the model's markets (e.g. 'IN ' or 'in' for 'IN') are
    # read by no partition: the features step counts them per month and reports them.
    WARN = "warn"  # in a check that warns; the partitions are written
    FAIL = "fail"  # and the partitions of their month fail; nothing of them is written


class MonitorCheck(StrEnum):
    """The per-partition monitoring checks of a prediction asset (core.monitoring)."""

    FEATURE_DRIFT_PREVIOUS_MONTH = "feature_drift_previous_month"
    FEATURE_DRIFT_REFERENCE = "feature_drift_reference"
    PREDICTION_DRIFT_PREVIOUS_MONTH = "prediction_drift_previous_month"
    PREDICTION_DRIFT_REFERENCE = "prediction_drift_reference"
    ROW_COUNT_CHANGE = "row_count_change"


class Thresholds(_Strict):
    warn: float = Field(ge=0)
    error: float = Field(ge=0)

    @model_validator(mode="after")
    def _warn_before_error(self) -> "Thresholds":
        if self.warn > self.error:
            raise ValueError(f"warn ({self.warn}) is greater than error ({self.error})")
        return self


class MonitoringConfig(_Strict):
    # Population stability index of a numeric feature or prediction (core.drift): below 0.1
    # stable, above 0.25 a significant shift, by the usual reading.
    psi: Thresholds = Thresholds(warn=0.1, error=0.25)
    # L-infinity distance of a string feature's category shares: the largest share change.
    category_distance: Thresholds = Thresholds(warn=0.1, error=0.2)
    # Relative change of a partition's row count from the same market's previous month.
    row_count_change: Thresholds = Thresholds(warn=0.2, error=0.5)
    # Checks whose error keeps the partition's old rows (the swap is refused); by default a
    # check never blocks: it reports.
    blocking: list[MonitorCheck] = Field(default_factory=list)


class AutomationConfig(_Strict):
    # How often the sensors look at the registry and at the source tables.
    registry_poll_seconds: int = Field(default=30, ge=5)
    source_poll_seconds: int = Field(default=60, ge=5)
    # When the schedule refreshes the latest complete month of every market (UTC).
    refresh_cron: Cron = "0 6 2 * *"


def _rate_limit(value: str) -> str:
    try:
        limits.parse(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a rate limit such as '100/second' or '1000 per minute'"
        ) from None
    return value


RateLimit = Annotated[str, AfterValidator(_rate_limit)]


class OidcConfig(_Strict):
    """Bearer tokens (JWTs) of an OpenID Connect provider, checked against its signing keys:
    the token's `scopes_claim` grants this endpoint's scopes (predict, pin, admin)."""

    issuer: str  # the `iss` a token must carry, e.g. https://login.example.com/
    audience: str  # the `aud` a token must carry: this service's name at the provider
    jwks_url: str  # the provider's signing keys (its discovery document's jwks_uri)
    scopes_claim: str = "scope"  # a space-separated string or a list
    client_claim: str = "sub"  # what the audit line and the rate limit call the caller

    @field_validator("jwks_url")
    @classmethod
    def _https(cls, url: str) -> str:
        # Plain HTTP only on this machine: anyone on the path could hand over their own keys.
        host = urlparse(url).hostname
        if urlparse(url).scheme != "https" and host not in ("localhost", "127.0.0.1", "::1"):
            raise ValueError("must be an https:// URL (http:// only for localhost)")
        return url


class AuthConfig(_Strict):
    """Who may call the on-demand endpoint: API keys, hashed, in a YAML document (README:
    Exposing on-demand scoring) in an environment variable or a file, never in this config;
    and/or bearer tokens of an OpenID Connect provider."""

    keys_env: str | None = None  # the name of the variable, e.g. COVERAGE_SERVING_API_KEYS
    keys_file: Path | None = None
    oidc: OidcConfig | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "AuthConfig":
        if self.keys_env is not None and self.keys_file is not None:
            raise ValueError("online.auth: give at most one of keys_env and keys_file")
        if self.keys_env is None and self.keys_file is None and self.oidc is None:
            raise ValueError("online.auth: give keys_env or keys_file, or oidc, or both")
        return self


class OnlineConfig(_Strict):
    """The on-demand endpoint (`coverage-serving serve`)."""

    # How often each served model re-resolves its alias; POST .../refresh does it at once.
    refresh_seconds: int = Field(default=30, ge=1)
    max_rows: int = Field(default=1000, ge=1)  # feature rows in one request
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    # None: no authentication, which the server allows only on a loopback address.
    auth: AuthConfig | None = None
    # Per client, unless its key entry says otherwise; counted per worker process with
    # memory://, across workers with a shared store (e.g. redis://host:6379).
    rate_limit: RateLimit = "100/second"
    rate_limit_storage: str = "memory://"
    # The model MLflow's /invocations scores; /models/{model}/invocations names one. None: the
    # only configured model, if there is one.
    default_model: Identifier | None = None


class ChallengerConfig(_Strict):
    """A version scored in shadow: into <output_table>_shadow, compared with the served one."""

    alias: RegistryName = "challenger"
    # The partitions the registry sensor keeps shadowed: every market of the last N months
    # (None: every partition). Any other partition can be shadowed by hand from the UI.
    last_months: int | None = Field(default=None, ge=1)


class PromotionGate(_Strict):
    """Thresholds a version's shadow comparison must meet, on every compared partition, before
    the served alias may move to it; unset thresholds are not checked."""

    min_rank_correlation: float | None = Field(default=None, ge=-1, le=1)
    min_top_decile_overlap: float | None = Field(default=None, ge=0, le=1)
    max_psi: float | None = Field(default=None, ge=0)
    max_abs_mean_shift: float | None = Field(default=None, ge=0)


class Compiled(StrEnum):
    # A LightGBM version is compiled to native code once (lleaves) and scored with the compiled
    # form when it predicted exactly like the model on real rows (core.compiled).
    AUTO = "auto"
    OFF = "off"  # always the model's own predict


class HistoryConfig(_Strict):
    """The rows a partition's rescoring replaces move to `<output_table>_history`."""

    # Per partition, keep the rows of the last K versions replaced; null keeps every version.
    keep_versions: int | None = Field(default=None, ge=1)


class ModelConfig(_Strict):
    name: Identifier
    registered_model: RegistryName
    alias: RegistryName = "champion"
    source_table: Identifier
    output_table: Identifier
    keys: dict[Identifier, ColumnSpec] = Field(min_length=1)
    features: dict[Identifier, ColumnSpec] = Field(min_length=1)
    predictions: dict[Identifier, PredictionSpec] = Field(min_length=1)
    markets: list[MarketCode] = Field(min_length=1)
    first_month: Month
    last_month: Month | None = None
    chunk_rows: int = Field(default=100_000, gt=0)
    invalid_rows: InvalidRows = InvalidRows.FAIL
    # With quarantine: the partition still fails when more than this share of rows is invalid.
    max_rejected_fraction: float = Field(default=0.01, ge=0, le=1)
    unmatched_markets: UnmatchedMarkets = UnmatchedMarkets.WARN
    challenger: ChallengerConfig | None = None
    promotion_gate: PromotionGate | None = None
    monitoring: MonitoringConfig = MonitoringConfig()
    history: HistoryConfig = HistoryConfig()
    compiled: Compiled = Compiled.AUTO
    # The largest absolute difference from the model's own predictions the compiled form may
    # show on the compared rows; 0 (default) is bitwise equality.
    compiled_max_abs_diff: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _columns_are_distinct(self) -> "ModelConfig":
        named = [*self.keys, *self.features, *self.predictions]
        repeated = sorted({c for c in named if named.count(c) > 1})
        if repeated:
            raise ValueError(f"columns used twice across keys/features/predictions: {repeated}")
        reserved = sorted(RESERVED_COLUMNS.intersection(named))
        if reserved:
            raise ValueError(
                f"columns {reserved} are reserved for partition, lineage and history columns"
            )
        nullable_keys = sorted(k for k, spec in self.keys.items() if spec.nullable)
        if nullable_keys:
            raise ValueError(f"key columns cannot be nullable: {nullable_keys}")
        nullable_ints = sorted(
            f for f, spec in self.features.items() if spec.nullable and spec.type == ColumnType.INT
        )
        if nullable_ints:
            raise ValueError(
                f"int features cannot be nullable (a missing int has no int64 form and MLflow "
                f"rejects it): declare {nullable_ints} as float"
            )
        if len(set(self.markets)) != len(self.markets):
            raise ValueError(f"markets are listed more than once: {self.markets}")
        if self.last_month is not None and self.last_month < self.first_month:
            raise ValueError("last_month is before first_month")
        if self.promotion_gate is not None and self.challenger is None:
            raise ValueError(
                "promotion_gate compares a version in shadow first: configure a challenger"
            )
        if self.challenger is not None and self.challenger.alias == self.alias:
            raise ValueError(f"challenger alias {self.alias!r} is the served alias")
        return self

    @property
    def key_columns(self) -> list[str]:
        return list(self.keys)

    @property
    def feature_columns(self) -> list[str]:
        return list(self.features)

    @property
    def prediction_columns(self) -> list[str]:
        return list(self.predictions)

    @property
    def features_table(self) -> str:
        return f"{self.name}_features"

    @property
    def categorical_features(self) -> list[str]:
        return [name for name, spec in self.features.items() if spec.type == ColumnType.STRING]

    @property
    def numeric_features(self) -> list[str]:
        return [name for name, spec in self.features.items() if spec.type != ColumnType.STRING]

    @property
    def rejected_table(self) -> str:
        return f"{self.output_table}_rejected"

    @property
    def shadow_table(self) -> str:
        return f"{self.output_table}_shadow"

    @property
    def history_table(self) -> str:
        return f"{self.output_table}_history"


class ServingConfig(_Strict):
    registry: RegistryConfig = RegistryConfig()
    automation: AutomationConfig = AutomationConfig()
    online: OnlineConfig = OnlineConfig()
    models: dict[Identifier, ModelConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _name_models_by_their_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            models = {}
            for name, entry in data["models"].items():
                if isinstance(entry, dict):
                    if "name" in entry:
                        raise ValueError(f"model {name!r}: 'name' comes from the key, remove it")
                    entry = {**entry, "name": name}
                models[name] = entry
            data = {**data, "models": models}
        return data

    @model_validator(mode="after")
    def _outputs_are_distinct(self) -> "ServingConfig":
        writers: dict[str, str] = {}
        for model in self.models.values():
            if model.output_table in writers:
                raise ValueError(
                    f"models {writers[model.output_table]!r} and {model.name!r} both write "
                    f"output_table {model.output_table!r}"
                )
            writers[model.output_table] = model.name
        return self

    @model_validator(mode="after")
    def _default_model_is_configured(self) -> "ServingConfig":
        default = self.online.default_model
        if default is not None and default not in self.models:
            raise ValueError(
                f"online.default_model {default!r} is not a configured model {sorted(self.models)}"
            )
        return self
