from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from coverage_serving.config import ConfigError, default_config_path, load_serving_config
from coverage_serving_tests.conftest import SMALL_CONFIG

Edit = Callable[[dict[str, Any]], object]  # mutates the parsed YAML in place


def _write(tmp_path: Path, edit: Edit) -> Path:
    raw = yaml.safe_load(SMALL_CONFIG.read_text())
    edit(raw)
    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _error(tmp_path: Path, edit: Edit) -> str:
    path = _write(tmp_path, edit)
    with pytest.raises(ConfigError) as raised:
        load_serving_config(path)
    message = str(raised.value)
    assert str(path) in message
    return message


def test_shipped_config_has_store_and_grid() -> None:
    config = load_serving_config()
    assert sorted(config.models) == ["grid", "store"]
    store = config.models["store"]
    assert store.alias == "champion"
    assert store.key_columns == ["store_id"]
    assert store.predictions["sales_potential"].min == 0
    assert config.registry.allow_pickled_models is True


def test_config_env_var_points_at_another_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COVERAGE_SERVING_CONFIG", str(SMALL_CONFIG))
    assert default_config_path() == SMALL_CONFIG
    assert load_serving_config().models["store"].markets == ["IN", "ID"]


def test_unknown_field_names_model_and_field(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda raw: raw["models"]["grid"].update(colour="red"))
    assert "model 'grid', field 'colour': unknown field" in message


def test_missing_field_names_model_and_field(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda raw: raw["models"]["store"].pop("output_table"))
    assert "model 'store', field 'output_table': missing field" in message


@pytest.mark.parametrize("bad", ['store"; DROP TABLE x; --', "1table", "store predictions"])
def test_table_name_must_be_plain_identifier(tmp_path: Path, bad: str) -> None:
    message = _error(tmp_path, lambda raw: raw["models"]["store"].update(output_table=bad))
    assert "model 'store', field 'output_table'" in message
    assert "not a plain SQL identifier" in message


def test_column_name_must_be_plain_identifier(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        lambda raw: raw["models"]["grid"]["features"].update({"pop'ulation": {"type": "float"}}),
    )
    assert "model 'grid', field \"features.pop'ulation\"" in message
    assert "not a plain SQL identifier" in message


def test_empty_market_list_is_refused(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda raw: raw["models"]["grid"].update(markets=[]))
    assert "model 'grid', field 'markets'" in message


def test_two_models_cannot_write_one_table(tmp_path: Path) -> None:
    message = _error(
        tmp_path, lambda raw: raw["models"]["grid"].update(output_table="store_predictions")
    )
    assert "both write output_table 'store_predictions'" in message


def test_reserved_and_repeated_columns_are_refused(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        lambda raw: raw["models"]["store"]["features"].update({"market": {"type": "string"}}),
    )
    assert "reserved" in message


def test_first_month_must_start_a_month(tmp_path: Path) -> None:
    message = _error(tmp_path, lambda raw: raw["models"]["store"].update(first_month="2026-01-15"))
    assert "field 'first_month': 2026-01-15 is not the first day of a month" in message


def test_nullable_int_feature_is_refused(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        lambda raw: raw["models"]["store"]["features"]["poi_count"].update(nullable=True),
    )
    assert "declare ['poi_count'] as float" in message


def test_categories_are_only_for_string_features(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        lambda raw: raw["models"]["store"]["features"]["poi_count"].update(values=["1", "2"]),
    )
    assert "model 'store'" in message or "store" in message
    assert "'values' lists categories of a string column, not of int" in message


@pytest.mark.parametrize(
    "hostile",
    ['store"; DROP TABLE serving.store_predictions; --', "stores'", "stores;", "a b", "`x`"],
)
def test_hostile_table_names_are_refused(tmp_path: Path, hostile: str) -> None:
    message = _error(tmp_path, lambda raw: raw["models"]["store"].update(output_table=hostile))
    assert "is not a plain SQL identifier" in message


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read serving config"):
        load_serving_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_serving_config(broken)


@pytest.mark.parametrize(
    ("section", "setting", "complaint"),
    [
        ("automation", {"refresh_cron": "monthly"}, "is not a five-field cron expression"),
        (
            "automation",
            {"refresh_cron": "0 6 2 * * ; rm -rf /"},
            "is not a five-field cron expression",
        ),
        ("automation", {"registry_poll_seconds": 1}, "greater than or equal to 5"),
        ("online", {"max_rows": 0}, "greater than or equal to 1"),
        ("online", {"refresh_seconds": "often"}, "valid integer"),
        ("online", {"max_body_bytes": 10}, "greater than or equal to 1024"),
    ],
)
def test_bad_service_setting_names_the_field(
    tmp_path: Path, section: str, setting: dict[str, object], complaint: str
) -> None:
    message = _error(tmp_path, lambda raw: raw.update({section: setting}))
    [field] = setting
    assert f"{section}.{field}" in message
    assert complaint in message


def test_shipped_automation_polls_and_refreshes_monthly() -> None:
    automation = load_serving_config().automation
    assert automation.registry_poll_seconds == 30
    assert automation.refresh_cron == "0 6 2 * *"


def test_unmatched_markets_is_warn_by_default_and_warn_or_fail(tmp_path: Path) -> None:
    assert load_serving_config(SMALL_CONFIG).models["store"].unmatched_markets == "warn"
    failing = load_serving_config(
        _write(tmp_path, lambda raw: raw["models"]["store"].update(unmatched_markets="fail"))
    )
    assert failing.models["store"].unmatched_markets == "fail"

    message = _error(tmp_path, lambda raw: raw["models"]["store"].update(unmatched_markets="skip"))

    assert "model 'store', field 'unmatched_markets': Input should be 'warn' or 'fail'" in message


def test_history_keeps_everything_by_default_or_the_last_versions(tmp_path: Path) -> None:
    assert load_serving_config(SMALL_CONFIG).models["store"].history.keep_versions is None
    pruned = load_serving_config(
        _write(tmp_path, lambda raw: raw["models"]["store"].update(history={"keep_versions": 2}))
    )
    assert pruned.models["store"].history.keep_versions == 2


@pytest.mark.parametrize(
    ("history", "complaint"),
    [
        ({"keep_versions": 0}, "field 'history.keep_versions': Input should be greater than"),
        ({"keep_versions": "all"}, "field 'history.keep_versions': Input should be a valid"),
        ({"keep": 3}, "field 'history.keep': unknown field"),
    ],
)
def test_a_bad_history_setting_names_model_and_field(
    tmp_path: Path, history: dict[str, object], complaint: str
) -> None:
    message = _error(tmp_path, lambda raw: raw["models"]["grid"].update(history=history))
    assert f"model 'grid', {complaint}" in message


def test_history_columns_are_reserved(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        lambda raw: raw["models"]["store"]["features"].update({"replaced_at": {"type": "float"}}),
    )
    assert "columns ['replaced_at'] are reserved" in message
