"""The serving configuration: which registered models score which tables, typed and validated."""

from coverage_serving.config.loader import ConfigError, default_config_path, load_serving_config
from coverage_serving.config.schema import (
    AuthConfig,
    ChallengerConfig,
    ColumnSpec,
    ColumnType,
    Compiled,
    InvalidRows,
    ModelConfig,
    MonitorCheck,
    MonitoringConfig,
    OnlineConfig,
    PredictionSpec,
    PromotionGate,
    RegistryConfig,
    ServingConfig,
    Thresholds,
    UnmatchedMarkets,
)

__all__ = [
    "AuthConfig",
    "ChallengerConfig",
    "ColumnSpec",
    "ColumnType",
    "Compiled",
    "ConfigError",
    "InvalidRows",
    "ModelConfig",
    "MonitorCheck",
    "MonitoringConfig",
    "OnlineConfig",
    "PredictionSpec",
    "PromotionGate",
    "RegistryConfig",
    "ServingConfig",
    "Thresholds",
    "UnmatchedMarkets",
    "default_config_path",
    "load_serving_config",
]
