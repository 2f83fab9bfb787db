"""lleaves compiled in LightGBM's summing order: bitwise equal to LightGBM's predict on a
forest of several cache blocks, and lleaves left as it was afterwards."""

from pathlib import Path

import lightgbm as lgb
import lleaves
import numpy as np
from lleaves.compiler.codegen import codegen

from coverage_serving.core.compiled import FLAGS
from coverage_serving.core.tree_order import trees_summed_in_lightgbm_order


def test_a_forest_of_several_blocks_predicts_bitwise_like_lightgbm(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.random((5_000, 10)) * np.arange(1, 11)
    y = x @ rng.normal(size=10) + rng.normal(0, 0.1, len(x))
    # 100 trees: three blocks of 34 and one of 32 (lleaves' default fblocksize).
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 15, "verbose": -1}, lgb.Dataset(x, y), 100
    )
    model_file = tmp_path / "booster.txt"
    model_file.write_text(booster.model_to_string())
    summing = codegen._populate_instruction_block

    forest = lleaves.Model(model_file=str(model_file))
    with trees_summed_in_lightgbm_order():
        forest.compile(**FLAGS)

    rows = rng.random((20_000, 10)) * np.arange(1, 11)
    assert np.array_equal(forest.predict(rows), booster.predict(rows))
    assert codegen._populate_instruction_block is summing
