"""The serving configuration: which registered models score which tables, typed and validated."""

from coverage_serving.config.loader import ConfigError, default_config_path, load_serving_config
from coverage_serving.config.schema import (
    ChallengerConfig,
    ColumnSpec,
    ColumnType,
    InvalidRows,
    ModelConfig,
    OnlineConfig,
    PredictionSpec,
    PromotionGate,
    RegistryConfig,
    ServingConfig,
    UnmatchedMarkets,
)

__all__ = [
    "ChallengerConfig",
    "ColumnSpec",
    "ColumnType",
    "ConfigError",
    "InvalidRows",
    "ModelConfig",
    "OnlineConfig",
    "PredictionSpec",
    "PromotionGate",
    "RegistryConfig",
    "ServingConfig",
    "UnmatchedMarkets",
    "default_config_path",
    "load_serving_config",
]
