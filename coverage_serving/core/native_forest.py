"""A LightGBM forest as native code: lleaves generates it, LLVM emits it as one object file, and
LLVM's JIT linker loads the object in one piece.

Glue where lleaves (1.3.0) falls short: it loads its object with MCJIT's default memory manager,
which may place a forest's code and its constants far apart, so it has to compile with the
large code model, every threshold reached through a 64-bit address. JITLink (through llvmlite's
LLJIT) places the whole object in one slab and refuses a relocation out of range with an error
instead of writing a wrong address, so the small code model's 32-bit offsets are safe: the same
predictions, bitwise, in 18-22% less time on the benchmark model (benchmarks/README.md).
(llvmlite's MCJIT memory manager that reserves one block aborted the process on a small
multiclass forest: not used.)

How many trees to evaluate per cache block (lleaves' `fblocksize`) is chosen per forest: the
best measured differed by forest shape and data (8 for the benchmark model, 17% slower with 34;
34 for a forest of small trees, 1.9x slower with 8), so `tuned_object_code` times each size on
the forest's own sample rows and keeps the faster.
"""

import ctypes
import os
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import llvmlite.binding as llvm
import numpy as np
from lleaves.compiler import compile_to_module
from lleaves.data_processing import data_to_ndarray

from coverage_serving.core.tree_order import trees_summed_in_lightgbm_order

CODE_MODEL = "small"
BLOCK_SIZES = (8, 34)  # trees per cache block tried: what the fastest forests measured used
# lleaves' defaults, passed explicitly: part of the compiled form's key (core.compiled). float64
# in and out is what the entry point below declares.
CODEGEN = {"finline": True, "use_fp64": True, "raw_score": False}
ROOT = "forest_root"
# Each thread takes at least this many rows: fewer than twice as many run on the caller's
# thread, with no pool (one-row on-demand requests).
MIN_ROWS_PER_THREAD = 1_000
# The compiled forest's entry point: features, predictions, first and past-last row.
_ENTRY = ctypes.CFUNCTYPE(
    None,
    ctypes.POINTER(ctypes.c_double),
    ctypes.POINTER(ctypes.c_double),
    ctypes.c_int32,
    ctypes.c_int32,
)


@dataclass(frozen=True)
class Tuning:
    """The block size kept, and each size's time per row (µs) on the sample."""

    block_size: int
    micros_per_row: dict[int, float]


@dataclass(frozen=True)
class Tuned:
    code: bytes
    tuning: Tuning


class NativeForest:
    """A forest's object code, loaded and ready to predict feature frames or arrays."""

    def __init__(self, code: bytes, booster: lgb.Booster) -> None:
        _initialise_llvm()
        self._jit = llvm.create_lljit_compiler(_machine(), use_jit_link=True)
        # The process's own symbols: a forest calls libm (exp, for its objective).
        library = llvm.JITLibraryBuilder().add_object_img(code).add_current_process()
        # Referenced for as long as the forest is: the tracker keeps the code loaded.
        self._code = library.export_symbol(ROOT).link(self._jit, f"forest-{uuid.uuid4().hex}")
        self._entry = _ENTRY(self._code[ROOT])
        self._features = booster.num_feature()
        self._classes = booster.num_model_per_iteration()
        self._categories = booster.pandas_categorical or []

    def predict(self, data: Any) -> np.ndarray:
        """Predictions as LightGBM's `predict` gives them: one per row, or one row of class
        probabilities per row. Rows are spread over the cores; the GIL is released meanwhile."""
        rows = np.ascontiguousarray(data_to_ndarray(data, self._categories), dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self._features:
            raise ValueError(f"expected rows of {self._features} features, got {rows.shape}")
        count = rows.shape[0]
        if count >= 2**31 - 1:  # the entry point counts rows in 32 bits
            raise ValueError(f"{count} rows in one call: predict at most 2**31 - 2")
        predictions = np.zeros(count * self._classes, dtype=np.float64)
        inputs = rows.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        outputs = predictions.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        # The cores this process may use (a container's affinity), not the machine's.
        threads = max(1, min(len(os.sched_getaffinity(0)), count // MIN_ROWS_PER_THREAD))
        if threads == 1:
            self._entry(inputs, outputs, 0, count)
        else:
            step = -(-count // threads)
            with ThreadPoolExecutor(threads) as pool:
                list(
                    pool.map(
                        lambda start: self._entry(inputs, outputs, start, min(start + step, count)),
                        range(0, count, step),
                    )
                )
        return predictions if self._classes == 1 else predictions.reshape(count, self._classes)


def object_code(booster: lgb.Booster, block_size: int) -> bytes:
    """The forest compiled to an object file, its trees summed in LightGBM's order."""
    _initialise_llvm()
    with tempfile.TemporaryDirectory(prefix="coverage-serving-forest-") as scratch:
        model_file = Path(scratch) / "booster.txt"
        model_file.write_text(booster.model_to_string())
        with trees_summed_in_lightgbm_order():
            module = compile_to_module(
                str(model_file), fblocksize=block_size, froot_func_name=ROOT, **CODEGEN
            )
    machine = _machine()
    module.data_layout = str(machine.target_data)
    return machine.emit_object(module)


def tuned_object_code(booster: lgb.Booster, sample: Any) -> Tuned:
    """The object code of the block size that predicts `sample` fastest on this machine."""
    # Once: each timed predict then takes the rows as they are.
    rows = np.ascontiguousarray(
        data_to_ndarray(sample, booster.pandas_categorical or []), dtype=np.float64
    )
    timed: dict[int, tuple[float, bytes]] = {}
    for block_size in BLOCK_SIZES:
        code = object_code(booster, block_size)
        timed[block_size] = (_seconds_per_row(NativeForest(code, booster), rows), code)
    fastest = min(timed, key=lambda size: timed[size][0])
    micros = {size: round(seconds * 1e6, 3) for size, (seconds, _) in timed.items()}
    return Tuned(timed[fastest][1], Tuning(fastest, micros))


def _seconds_per_row(forest: NativeForest, rows: np.ndarray) -> float:
    best = float("inf")
    for _ in range(3):  # the best of three: the least disturbed by the rest of the machine
        started = time.perf_counter()
        forest.predict(rows)
        best = min(best, time.perf_counter() - started)
    return best / max(len(rows), 1)


def _initialise_llvm() -> None:
    # Idempotent: LLVM's per-process state, with the host's code generator.
    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


def host_cpu_features() -> str:
    _initialise_llvm()
    try:
        return llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM raises where it cannot detect them; lleaves then uses none
        return ""


def _machine() -> llvm.TargetMachine:
    """The host's target machine, as lleaves makes it but with the small code model."""
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=host_cpu_features(),
        reloc="pic",
        codemodel=CODE_MODEL,
    )
