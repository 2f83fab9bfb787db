"""lleaves compiled in LightGBM's summing order: bitwise equal to LightGBM's predict on a
forest of several cache blocks, and lleaves left as it was afterwards."""

import lightgbm as lgb
import numpy as np
from lleaves.compiler.codegen import codegen

from coverage_serving.core.native_forest import NativeForest, object_code


def test_a_forest_of_several_blocks_predicts_bitwise_like_lightgbm() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((5_000, 10)) * np.arange(1, 11)
    y = x @ rng.normal(size=10) + rng.normal(0, 0.1, len(x))
    # 100 trees: three blocks of 34 and one of 32.
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 15, "verbose": -1}, lgb.Dataset(x, y), 100
    )
    summing = codegen._populate_instruction_block

    forest = NativeForest(object_code(booster, block_size=34), booster)

    rows = rng.random((20_000, 10)) * np.arange(1, 11)
    assert np.array_equal(forest.predict(rows), booster.predict(rows))
    assert codegen._populate_instruction_block is summing
