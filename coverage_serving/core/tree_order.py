"""lleaves' code generation, made to sum a forest's trees in LightGBM's order.

LightGBM adds tree after tree to one running sum. lleaves (1.3.0) evaluates its trees in blocks
of `fblocksize` for the instruction cache, sums each block from zero and then adds the block's
sum to the running one: the same terms added in another order, so on most rows the last bits
differ (measured: max 2.4e-13 absolute on the benchmark model, 10% of rows bitwise equal).
Starting each block's sum from the running sum instead restores LightGBM's order without losing
the blocking: bitwise equal on every compared row, compile time and speed unchanged. Disabling
the blocking (`fblocksize` = number of trees) is bitwise too but compiles about 6x longer.

The change is applied to lleaves' own source text of the one function that sums, while
compiling only. If a future lleaves no longer has the text it replaces, compiling fails loudly
and the version is served with the model's own predict (core.compiled reports why).
"""

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lleaves.compiler.codegen import codegen

# Part of the compiled form's key: a compiled object built with another order is another form.
ORDER = "lightgbm-sequential-v1"

_BLOCK_SUM_FROM_ZERO = (
    "    results = [get_fdtype_const(0.0, use_fp64) for _ in range(forest.n_classes)]\n"
)
_OUTPUT_POINTERS = """\
    res_idx = builder.mul(lconst(forest.n_classes), loop_iter_reg)
    results_ptr = [
        builder.gep(out_arr, (builder.add(res_idx, lconst(class_idx)),))
        for class_idx in range(forest.n_classes)
    ]
"""
_BLOCK_SUM_ADDED_TO_RUNNING_SUM = """\
    if instr_block_idx > 0:
        results = [
            builder.fadd(result, builder.load(result_ptr))
            for result, result_ptr in zip(results, results_ptr)
        ]
"""
_BLOCK_SUM_FROM_RUNNING_SUM = """\
    results = [
        builder.load(result_ptr) if instr_block_idx > 0 else get_fdtype_const(0.0, use_fp64)
        for result_ptr in results_ptr
    ]
"""
_PATCHING = threading.Lock()


class UnexpectedLleavesSource(RuntimeError):
    """lleaves' summing code is not the code this module knows how to reorder."""


@contextmanager
def trees_summed_in_lightgbm_order() -> Iterator[None]:
    """lleaves compiles forests that sum their trees in LightGBM's order within this block."""
    with _PATCHING:
        original = codegen._populate_instruction_block
        codegen._populate_instruction_block = _reordered(original)
        try:
            yield
        finally:
            codegen._populate_instruction_block = original


def _reordered(original: object) -> object:
    source = inspect.getsource(original)  # type: ignore[arg-type]
    for expected in (_BLOCK_SUM_FROM_ZERO, _OUTPUT_POINTERS, _BLOCK_SUM_ADDED_TO_RUNNING_SUM):
        if source.count(expected) != 1:
            raise UnexpectedLleavesSource(
                f"lleaves' _populate_instruction_block does not contain {expected!r} once"
            )
    # The output pointers are computed before the sum, so each block can start from the
    # running sum they hold.
    source = source.replace(_OUTPUT_POINTERS, "").replace(_BLOCK_SUM_ADDED_TO_RUNNING_SUM, "")
    source = source.replace(_BLOCK_SUM_FROM_ZERO, _OUTPUT_POINTERS + _BLOCK_SUM_FROM_RUNNING_SUM)
    namespace = dict(vars(codegen))
    exec(compile(source, codegen.__file__, "exec"), namespace)
    return namespace["_populate_instruction_block"]
