"""The JSON bodies of the on-demand endpoint; a model's predict bodies are built from its config.

FastAPI checks each request against these models before anything reaches the warehouse or the
model, and the OpenAPI document publishes the same models: a key or feature of the wrong type or
shape, a category the model was not trained on, a market it does not serve, an odd month or
version is refused with a 422 naming the field, never passed on for DuckDB or pandas to trip on.
"""

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from coverage_serving.config import ColumnSpec, ColumnType, ModelConfig
from coverage_serving.core.contracts import SAMPLE_SIZE
from coverage_serving.core.tables import predictions_table
from coverage_serving.errors import ServingError
from coverage_serving.online.served import Status
from coverage_serving.warehouse import Column

# A response row is the prediction table's row, with the request's id in place of a run id.
NOT_RETURNED = ["dagster_run_id"]

# Numbers JSON carries exactly (I-JSON, RFC 7493): integers that int64 holds and so does a
# double, in which the OpenAPI document and its readers state bounds (2**63 - 1 is no double),
# and finite doubles (whose bounds a document cannot state exactly in decimal).
INTEGER = Field(ge=-(2**53 - 1), le=2**53 - 1)
FINITE = Field(allow_inf_nan=False)
# MLflow keeps versions in a 32-bit integer column: a larger number breaks its query.
VERSION = Field(ge=1, le=2**31 - 1, description="Score with this version instead of the alias's")
# First days of months that a pattern can state and a nanosecond timestamp holds (1677-2262).
MONTH_PATTERN = r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])-01$"

# The two kinds of predict body, and the tag pydantic puts first in the location of an error.
KEY, ROWS = "key", "rows"


def _unicode(value: str) -> str:
    # JSON can escape a lone surrogate ("\ud800"), which no warehouse or Arrow string holds.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("is not Unicode text: it holds a lone surrogate") from None
    return value


def _whole(value: object) -> object:
    # JSON Schema counts 3.0 as an integer, and so do clients that hold counts as doubles.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _double(value: object) -> object:
    # Said here: the conversion's own error ("not a valid number") would puzzle the sender.
    if isinstance(value, int) and abs(value) > sys.float_info.max:
        raise ValueError("is beyond the range of a double")
    return value


def _month(value: object) -> date:
    if not isinstance(value, str) or not re.fullmatch(MONTH_PATTERN, value):
        raise ValueError("is not the first day of a month of 1900-2199, written YYYY-MM-01")
    return date.fromisoformat(value)


Text = Annotated[str, AfterValidator(_unicode)]
Whole = BeforeValidator(_whole)
Double = BeforeValidator(_double)
Month = Annotated[
    date,
    PlainValidator(_month),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": MONTH_PATTERN,
            "description": "The month the rows belong to, as its first day (YYYY-MM-01)",
        }
    ),
]


class _Strict(BaseModel):
    # Strict: "1" is not a number and 1 is not text, as the OpenAPI document says.
    model_config = ConfigDict(strict=True, extra="forbid")


class _Row(BaseModel):
    # Other fields (a feature table's market and month, say) are ignored, as by the input
    # contract.
    model_config = ConfigDict(strict=True, extra="ignore")


# The bodies every model shares; each model's subclasses (predict_request, predict_response)
# narrow market, key and rows to what its config says.


class KeyRequest(_Strict):
    """Score the key's latest feature row in the warehouse."""

    market: str
    key: BaseModel
    version: Annotated[int, VERSION, Whole] | None = None


class RowsRequest(_Strict):
    """Score these feature rows as rows of `month`."""

    market: str
    month: Month
    rows: list[BaseModel]
    version: Annotated[int, VERSION, Whole] | None = None


class PredictResponse(BaseModel):
    model: str
    model_version: int
    request_id: str
    rows: list[BaseModel]


class Readiness(BaseModel):
    ready: bool
    models: list[Status]


class ErrorBody(BaseModel):
    """A refused or failed request: what kind of error and a message naming what is wrong.
    Some errors say more: the model, the fields at fault, the contract and its violations."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class InvalidRequestError(ServingError):
    """A request whose fields do not fit the model's config: the 422 every protocol answers."""

    def __init__(self, model: str | None, problems: list[dict[str, str]]) -> None:
        listed = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:SAMPLE_SIZE])
        more = f" (and {len(problems) - SAMPLE_SIZE} more)" if len(problems) > SAMPLE_SIZE else ""
        super().__init__(f"invalid request for model {model!r}: {listed}{more}")
        self.model = model
        self.problems = problems

    def metadata(self) -> dict[str, Any]:
        return {
            "error": "InvalidRequest",
            "model": self.model,
            "message": str(self),
            "fields": self.problems,
        }


def _row_model(model: ModelConfig) -> type[BaseModel]:
    return create_model(
        f"{model.name}_row", __base__=_Row, **_fields({**model.keys, **model.features})
    )


def rows_validator(model: ModelConfig) -> Callable[[object], list[dict[str, Any]]]:
    """For the protocols whose bodies are not this project's (MLflow's, the Open Inference
    Protocol's): their rows, each checked as /v1 checks a row, as plain values."""
    adapter = TypeAdapter(list[_row_model(model)])  # type: ignore[valid-type]

    def validated(rows: object) -> list[dict[str, Any]]:
        try:
            return [row.model_dump() for row in adapter.validate_python(rows)]
        except ValidationError as err:
            problems = [
                {
                    "field": "rows" + location(e["loc"]),
                    "problem": e["msg"].removeprefix("Value error, "),
                }
                for e in err.errors(include_url=False)
            ]
            raise InvalidRequestError(model.name, problems) from None

    return validated


class Parameters(_Strict):
    """Market, month and version where a protocol's body has no field for them."""

    market: str
    month: Month | None = None
    version: Annotated[int, VERSION, Whole] | None = None


def _market(model: ModelConfig) -> Any:
    return Literal[tuple(model.markets)], Field(description="One of the model's markets")


def parameters_model(model: ModelConfig) -> type[Parameters]:
    """Parameters of `model`: its markets only; the market may go unsaid if it has one."""
    accepted, described = _market(model)
    market = (accepted, model.markets[0]) if len(model.markets) == 1 else (accepted, described)
    return create_model(f"{model.name}_parameters", __base__=Parameters, market=market)


def predict_request(model: ModelConfig, max_rows: int) -> Any:
    """The predict body of `model`: a key to look up, or feature rows of a month."""
    market = _market(model)
    key = create_model(f"{model.name}_key", __base__=_Strict, **_fields(model.keys))
    row = _row_model(model)
    by_key = create_model(
        f"{model.name}_key_request", __base__=KeyRequest, market=market, key=(key, ...)
    )
    by_rows = create_model(
        f"{model.name}_rows_request",
        __base__=RowsRequest,
        market=market,
        rows=(
            list[row],
            Field(
                min_length=1,
                # Documented, but more rows are a 413 (online.max_rows) rather than a 422.
                json_schema_extra={"maxItems": max_rows},
                description="Feature rows: the key column(s) and every configured feature",
            ),
        ),
    )
    return Annotated[
        Annotated[by_key, Tag(KEY)] | Annotated[by_rows, Tag(ROWS)],
        Discriminator(
            _kind,
            custom_error_type="key_or_rows",
            custom_error_message="give a JSON object with either key, or rows and their month",
        ),
    ]


def predict_response(model: ModelConfig) -> type[PredictResponse]:
    columns = predictions_table(model).without(NOT_RETURNED).columns
    row = create_model(
        f"{model.name}_prediction", **{c.name: (_python_type(c), ...) for c in columns}
    )
    return create_model(
        f"{model.name}_predict_response", __base__=PredictResponse, rows=(list[row], ...)
    )


def body_problems(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """FastAPI's validation errors of a request as the field each concerns (`rows[0].latitude`)
    and what is wrong with it."""
    problems = []
    for error in errors:
        where, *loc = error["loc"]
        if error["type"] == "json_invalid":
            field, problem = "body", f"not JSON: {error['ctx']['error']} at character {loc[0]}"
        else:
            field = location(loc[1:] if loc and loc[0] in (KEY, ROWS) else loc) or where
            problem = error["msg"].removeprefix("Value error, ")
        problems.append({"field": field, "problem": problem})
    return problems


def _fields(specs: dict[str, ColumnSpec]) -> dict[str, Any]:
    return {
        name: (_value_type(spec), Field(description=spec.description or None))
        for name, spec in specs.items()
    }


def _value_type(spec: ColumnSpec) -> Any:
    """The JSON values a key or feature column takes."""
    accepted: Any
    if spec.values is not None:
        accepted = Literal[tuple(spec.values)]
    elif spec.type == ColumnType.STRING:
        accepted = Text
    elif spec.type == ColumnType.INT:
        accepted = Annotated[int, INTEGER, Whole]
    else:
        accepted = Annotated[float, FINITE, Double]
    return accepted | None if spec.nullable else accepted


def _python_type(column: Column) -> Any:
    python = {"string": str, "int": int, "float": float, "date": date, "timestamp": datetime}
    accepted = python[column.kind]
    return accepted | None if column.nullable else accepted


def _kind(body: Any) -> str | None:
    """Which kind of predict body this is; None when it has both key and rows, or neither."""
    if not isinstance(body, dict) or (KEY in body) == (ROWS in body):
        return None
    return KEY if KEY in body else ROWS


def location(loc: Sequence[str | int]) -> str:
    """A pydantic error location as a field path: rows[0].latitude."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in [
        (400, "A body that is not UTF-8 JSON (or CSV), or that nests too deep"),
        (401, "No API key, or one that is not valid"),
        (403, "The API key lacks the scope, or the version is held by the promotion gate"),
        (404, "No such model, key or version"),
        (411, "No Content-Length"),
        (413, "More rows than online.max_rows, or a body over online.max_body_bytes"),
        (415, "A body neither JSON nor CSV"),
        (422, "A field of the wrong type or shape, or feature rows that fail the input contract"),
        (429, "The client is over its rate limit: retry after Retry-After seconds"),
        (503, "The registry does not answer, or the model has no loaded version yet"),
        (500, "A server fault: the message has a reference to the server log"),
    ]
}
