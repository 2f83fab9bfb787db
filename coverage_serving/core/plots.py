"""The drift of a batch run drawn as PNG files, from the stored partition profiles.

Per market the run touched, a heat map of each feature's drift from its version's reference
(rows: features; columns: every profiled month of the market), coloured in multiples of the
metric's warn threshold so PSI and L-infinity share one scale. Per partition of the run (at
most MAX_DISTRIBUTIONS), the shares of its predictions in the reference's bins beside the
reference's own shares. Drawn with matplotlib's object API (no pyplot), so nothing global is
touched and no display is needed.
"""

import math
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from coverage_serving.config import ModelConfig
from coverage_serving.core.compare import PartitionComparison
from coverage_serving.core.drift import column_drift
from coverage_serving.core.monitoring import (
    ProfileStore,
    Reference,
    StoredProfile,
    baselines,
    thresholds,
)
from coverage_serving.core.profile import Edges, NumericProfile
from coverage_serving.core.reference import ShippedReferences
from coverage_serving.partition import Partition

MAX_DISTRIBUTIONS = 50  # distribution plots per run: a 36-month backfill of a market fits


def draw_run_plots(
    store: ProfileStore,
    partitions: Iterable[Partition],
    references: ShippedReferences,
    directory: Path,
) -> list[Path]:
    """Draw the heat map of every market of `partitions` and the prediction distribution of
    each of the first MAX_DISTRIBUTIONS partitions into `directory`; the files written."""
    scored = sorted(partitions, key=lambda p: (p.market, p.month))
    written = []
    for market in sorted({p.market for p in scored}):
        profiles = list(store.market(market))
        if profiles:
            written.append(draw_heat_map(store, market, profiles, references, directory))
    for partition in scored[:MAX_DISTRIBUTIONS]:
        stored = store.read(partition)
        if stored is not None:
            reference = _reference(store, stored, references)
            written.append(draw_distribution(store.model, stored, reference, directory))
    return written


def draw_heat_map(
    store: ProfileStore,
    market: str,
    profiles: list[StoredProfile],
    references: ShippedReferences,
    directory: Path,
) -> Path:
    """Feature x month drift of one market from each month's version reference."""
    model = store.model
    ratios = np.full((len(model.feature_columns), len(profiles)), np.nan)
    labels = np.full(ratios.shape, "", dtype=object)
    for col, stored in enumerate(profiles):
        reference = _reference(store, stored, references).profile
        if reference is None:
            labels[:, col] = "ref"  # the version's first month here: its own reference
            continue
        for drift in column_drift(stored.profile, reference, model.feature_columns):
            if drift.value is not None:
                row = model.feature_columns.index(drift.column)
                ratios[row, col] = drift.value / thresholds(model, drift.metric).warn
                labels[row, col] = f"{drift.value:.2f}"
    figure = Figure(
        figsize=(max(7.0, 4.0 + 0.8 * len(profiles)), 2.0 + 0.45 * len(ratios)),
        layout="constrained",
    )
    axes = figure.add_subplot()
    error = max(
        model.monitoring.psi.error / model.monitoring.psi.warn,
        model.monitoring.category_distance.error / model.monitoring.category_distance.warn,
    )
    top = max(error, float(np.nanmax(ratios, initial=0.0)))
    image = axes.imshow(
        np.ma.masked_invalid(ratios), cmap="YlOrRd", vmin=0.0, vmax=top, aspect="auto"
    )
    for (row, col), text in np.ndenumerate(labels):
        dark = ratios[row, col] > 0.6 * top  # NaN compares False
        color = "white" if dark else "black"
        axes.text(col, row, text, ha="center", va="center", fontsize=8, color=color)
    axes.set_xticks(range(len(profiles)), [f"{s.partition.month:%Y-%m}" for s in profiles])
    axes.set_yticks(range(len(model.feature_columns)), model.feature_columns)
    axes.tick_params(axis="x", labelrotation=45)
    axes.set_xlabel("month (cell: PSI or L-infinity from the version's reference)")
    axes.set_ylabel("feature")
    axes.set_title(f"{model.name}: feature drift from reference, market {market}")
    figure.colorbar(image, ax=axes, label="drift / warn threshold (1 = warn)")
    return _save(figure, directory / f"heat_map_{market}.png")


def draw_distribution(
    model: ModelConfig, stored: StoredProfile, reference: Reference, directory: Path
) -> Path:
    """The shares of the partition's predictions in each bin beside its reference's."""
    columns = model.prediction_columns
    figure = Figure(figsize=(8.0, 1.0 + 3.8 * len(columns)), layout="constrained")
    for index, column in enumerate(columns, start=1):
        axes = figure.add_subplot(len(columns), 1, index)
        current = stored.profile.columns[column]
        assert isinstance(current, NumericProfile)
        baseline = reference.profile.columns.get(column) if reference.profile else None
        positions = np.arange(len(current.counts))
        axes.bar(positions - 0.2, _shares(current), 0.4, label=f"{stored.partition}")
        if isinstance(baseline, NumericProfile) and baseline.edges == current.edges:
            axes.bar(positions + 0.2, _shares(baseline), 0.4, label="reference")
        axes.set_xticks(positions, _bin_labels(current.edges), fontsize=7)
        axes.tick_params(axis="x", labelrotation=45)
        axes.set_xlabel(f"{column} (bins: the reference's deciles)")
        axes.set_ylabel("share of rows")
        axes.set_title(f"{model.name} {stored.partition} v{stored.model_version}: {column}")
        axes.legend(fontsize=8)
    figure.suptitle(f"reference: {reference.source}", fontsize=8)
    name = f"predictions_{stored.partition.market}_{stored.partition.month:%Y-%m}.png"
    return _save(figure, directory / name)


def draw_comparisons(
    model: ModelConfig, compared: dict[Partition, PartitionComparison], directory: Path
) -> list[Path]:
    """Per shadow partition (the first MAX_DISTRIBUTIONS), the challenger's predictions beside
    the served ones, as shares of the served predictions' deciles; the files written."""
    written = []
    for partition in sorted(compared)[:MAX_DISTRIBUTIONS]:
        columns = compared[partition].columns
        if not columns:
            continue
        figure = Figure(figsize=(8.0, 1.0 + 3.4 * len(columns)), layout="constrained")
        for index, (column, comparison) in enumerate(columns.items(), start=1):
            axes = figure.add_subplot(len(columns), 1, index)
            positions = np.arange(len(comparison.served_bins))
            for offset, label, counts in (
                (-0.2, "served", comparison.served_bins),
                (0.2, "challenger", comparison.challenger_bins),
            ):
                total = sum(counts) or 1
                axes.bar(positions + offset, [c / total for c in counts], 0.4, label=label)
            axes.set_xticks(positions, [f"d{i + 1}" for i in positions])
            axes.set_xlabel(f"{column}: deciles of the served predictions")
            axes.set_ylabel("share of rows")
            axes.set_title(
                f"{model.name} {partition}: PSI {comparison.psi:.3f}, rank correlation "
                f"{comparison.rank_correlation:.3f}, mean shift {comparison.mean_diff:+.4g}"
            )
            axes.legend(fontsize=8)
        name = f"comparison_{partition.market}_{partition.month:%Y-%m}.png"
        written.append(_save(figure, directory / name))
    return written


def _reference(
    store: ProfileStore, stored: StoredProfile, references: ShippedReferences
) -> Reference:
    version = stored.model_version
    return baselines(store, stored.partition, version, references(version)).reference


def _shares(profile: NumericProfile) -> list[float]:
    return [count / profile.finite if profile.finite else 0.0 for count in profile.counts]


def _bin_labels(edges: Edges) -> list[str]:
    bounds = [-math.inf, *edges, math.inf]
    return [f"[{low:.3g}, {high:.3g})" for low, high in pairwise(bounds)]


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path
