"""Forests compiled with the small code model and loaded by the JIT linker: they predict as
LightGBM does (one value per row, or class probabilities), on one row or many, and the block
size tuned on sample rows is one of those tried, with each one's time recorded."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from coverage_serving.core.native_forest import (
    BLOCK_SIZES,
    NativeForest,
    object_code,
    tuned_object_code,
)

RNG = np.random.default_rng(11)
ROWS = RNG.normal(size=(4_000, 6))


def trained(params: dict[str, object], target: np.ndarray, trees: int = 40) -> lgb.Booster:
    return lgb.train({"num_leaves": 15, "verbose": -1, **params}, lgb.Dataset(ROWS, target), trees)


def test_a_multiclass_forest_predicts_probabilities_like_lightgbm() -> None:
    classes = np.digitize(ROWS[:, 0] + ROWS[:, 1], [-0.5, 0.5])
    booster = trained({"objective": "multiclass", "num_class": 3}, classes)

    predicted = NativeForest(object_code(booster, block_size=8), booster).predict(ROWS)

    assert predicted.shape == (len(ROWS), 3)
    # lleaves' softmax rounds in its own order: close, not bitwise (measured 1.1e-15).
    assert np.abs(predicted - booster.predict(ROWS)).max() < 1e-12


def test_one_row_and_a_frame_predict_like_lightgbm() -> None:
    booster = trained({"objective": "binary"}, (ROWS[:, 2] > 0).astype(int))
    forest = NativeForest(object_code(booster, block_size=8), booster)
    frame = pd.DataFrame(ROWS, columns=[f"f{i}" for i in range(6)])

    assert np.array_equal(forest.predict(ROWS[:1]), booster.predict(ROWS[:1]))
    assert np.array_equal(forest.predict(frame), booster.predict(ROWS))


def test_rows_of_another_width_are_refused() -> None:
    booster = trained({"objective": "regression"}, ROWS[:, 3])
    forest = NativeForest(object_code(booster, block_size=8), booster)

    with pytest.raises(ValueError, match="expected rows of 6 features, got \\(10, 5\\)"):
        forest.predict(ROWS[:10, :5])


def test_the_tuned_block_size_is_the_fastest_tried_on_the_sample() -> None:
    booster = trained({"objective": "regression"}, ROWS[:, 3])

    tuned = tuned_object_code(booster, ROWS)

    assert set(tuned.tuning.micros_per_row) == set(BLOCK_SIZES)
    times = tuned.tuning.micros_per_row
    assert times[tuned.tuning.block_size] == min(times.values())
    forest = NativeForest(tuned.code, booster)
    assert np.array_equal(forest.predict(ROWS), booster.predict(ROWS))


def test_a_categorical_frame_and_no_rows_predict_like_lightgbm() -> None:
    frame = pd.DataFrame(ROWS[:, :3], columns=["a", "b", "c"])
    frame["kind"] = pd.Categorical(np.where(ROWS[:, 3] > 0, "urban", "rural"))
    target = ROWS[:, 0] + (frame["kind"] == "urban") * 2.0
    booster = lgb.train(
        {"num_leaves": 15, "verbose": -1, "objective": "regression"},
        lgb.Dataset(frame, target),
        30,
    )
    forest = NativeForest(object_code(booster, block_size=8), booster)

    assert np.array_equal(forest.predict(frame), booster.predict(frame))
    assert forest.predict(frame.head(0)).shape == (0,)
