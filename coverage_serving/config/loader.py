"""Read serving.yaml (or the file COVERAGE_SERVING_CONFIG names) into a ServingConfig."""

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from coverage_serving.config.schema import ServingConfig

CONFIG_ENV_VAR = "COVERAGE_SERVING_CONFIG"


class ConfigError(ValueError):
    """The serving config cannot be used; the message names the file, model and field."""


def default_config_path() -> Path:
    override = os.environ.get(CONFIG_ENV_VAR)
    return Path(override) if override else Path(__file__).with_name("serving.yaml")


def load_serving_config(path: Path | None = None) -> ServingConfig:
    path = path or default_config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read serving config: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    try:
        return ServingConfig.model_validate(raw)
    except ValidationError as err:
        problems = "\n".join(f"  - {_describe(e)}" for e in err.errors())
        raise ConfigError(f"{path}: invalid serving config:\n{problems}") from err


def _describe(error: dict) -> str:
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "missing field"
    if len(loc) >= 2 and loc[0] == "models":
        where = f"model {loc[1]!r}"
        field = ".".join(loc[2:])
        return f"{where}, field {field!r}: {message}" if field else f"{where}: {message}"
    return f"field {'.'.join(loc)!r}: {message}" if loc else message
