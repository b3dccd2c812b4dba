"""``verl-perception curves``: training curves of a run from its files, without wandb.

    verl-perception curves RUN_FILE_OR_DIR [...] --out DIR

Reads verl's file-logger jsonl, a saved console log, or a ``trainer.rollout_data_dir``
(:mod:`verl_perception.training_logs`) and writes to ``DIR``:

- ``overview.png``: the mean reward of the batch (``critic/score/mean``) and of each data source;
- ``<group>.png``: per data source (``perception/<data_source>/*``) or per task in the dumps
  (``rollouts/<task>/*``), the reward on the left and the rates and components (0-1) on the right;
- ``curves.csv`` (step x metric) and ``curves.md`` (the last value of each metric, the pictures).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from collections.abc import Sequence

from verl_perception.training_logs import Series, merge, read_run

GROUP_PREFIXES = ("perception/", "rollouts/")
BATCH_SCORE = "critic/score/mean"
REWARD_NAMES = ("score",)  # drawn on their own axis: a reward goes up to 3 (detection)
SKIPPED_NAMES = ("share",)  # the batch mix: in the csv, not worth a line


def groups(series: Series) -> dict[str, dict[str, str]]:
    """``{"perception/coco": {"f1": "perception/coco/f1", ...}, ...}`` of the per-source metrics."""
    out: dict[str, dict[str, str]] = {}
    for key in series:
        if key.startswith(GROUP_PREFIXES) and key.count("/") == 2:
            group, name = key.rsplit("/", 1)
            out.setdefault(group, {})[name] = key
    return out


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "x")


def save_figure(plt, fig, path: str, dpi: float | str = "figure") -> str:
    """Lay ``fig`` out, write it to ``path`` (folders made), close it; returns ``path``."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _line(ax, series: Series, key: str, label: str) -> None:
    # several metrics often share a value (a recall of 0.5 and a format rate of 0.5): line styles
    # and markers keep each one visible
    n = len(ax.lines)
    steps, values = zip(*series[key])
    marker = _MARKERS[n % len(_MARKERS)] if len(steps) < 30 else None
    ax.plot(steps, values, linestyle=_STYLES[n % len(_STYLES)], marker=marker, markersize=4, label=label)


def _steps_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("training step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def plot_group(series: Series, group: str, names: dict[str, str], path: str) -> str:
    """Reward (left) and the 0-1 metrics (right) of one data source over the steps."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    for name in REWARD_NAMES:
        if name in names:
            _line(left, series, names[name], name)
    left.set_title(f"{group}: reward")
    others = [n for n in sorted(names) if n not in REWARD_NAMES + SKIPPED_NAMES]
    for name in others:
        _line(right, series, names[name], name)
    right.set_title(f"{group}: rates and components")
    right.set_ylim(-0.02, 1.02)
    for ax in (left, right):
        _steps_axis(ax)
        if ax.lines:
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False)
    return save_figure(plt, fig, path)


def plot_overview(series: Series, by_group: dict[str, dict[str, str]], path: str) -> str | None:
    """The batch's mean reward and each data source's, on one axis; None when there is neither."""
    keys = [(BATCH_SCORE, "whole batch")] if BATCH_SCORE in series else []
    keys += [(names["score"], group) for group, names in sorted(by_group.items()) if "score" in names]
    if not keys:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    for key, label in keys:
        _line(ax, series, key, label)
    ax.set_title("mean reward per training step")
    _steps_axis(ax)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=9, frameon=False)
    return save_figure(plt, fig, path)


def write_csv(series: Series, path: str) -> str:
    """One row per step, one column per metric (empty where a metric was not logged)."""
    keys = sorted(series)
    table: dict[int, dict[str, float]] = {}
    for key in keys:
        for step, value in series[key]:
            table.setdefault(step, {})[key] = value
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *keys])
        for step in sorted(table):
            writer.writerow([step, *(table[step].get(k, "") for k in keys)])
    return path


def write_curves(series: Series, out_dir: str, sources: Sequence[str] = ()) -> dict:
    """All pictures, the csv and ``curves.md``; returns ``{"report", "plots", "csv", "groups"}``."""
    if not series:
        raise ValueError("no metrics found: is it a verl file-logger jsonl, a console log or a rollout_data_dir?")
    os.makedirs(out_dir, exist_ok=True)
    by_group = groups(series)
    plots = []
    overview = plot_overview(series, by_group, os.path.join(out_dir, "overview.png"))
    if overview:
        plots.append(overview)
    for group, names in sorted(by_group.items()):
        plots.append(plot_group(series, group, names, os.path.join(out_dir, group.replace("/", "_") + ".png")))
    table = write_csv(series, os.path.join(out_dir, "curves.csv"))
    lines = ["# Training curves", ""]
    lines += [f"- source: `{s}`" for s in sources]
    steps = sorted({step for points in series.values() for step, _ in points})
    lines += [f"- steps {steps[0]}-{steps[-1]} ({len(steps)} logged)", ""]
    if by_group:
        lines += ["| metric | first | last |", "|---|---|---|"]
        for group, names in sorted(by_group.items()):
            for name in sorted(names):
                points = series[names[name]]
                lines.append(f"| {names[name]} | {points[0][1]:.3f} | {points[-1][1]:.3f} |")
        lines.append("")
    else:
        lines += ["No per-task metrics (`perception/...`) in these files: see docs/verl_integration.md.", ""]
    lines += [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots]
    report = os.path.join(out_dir, "curves.md")
    with open(report, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return {"report": report, "plots": plots, "csv": table, "groups": sorted(by_group)}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="verl-perception curves", description=__doc__.split("\n")[0])
    p.add_argument(
        "runs",
        nargs="+",
        help="verl file-logger .jsonl, a saved console log, or a trainer.rollout_data_dir directory",
    )
    p.add_argument("--out", required=True, help="output directory")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        series = merge(read_run(path) for path in args.runs)
        result = write_curves(series, args.out, args.runs)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(result['groups'])} per-task groups: {', '.join(result['groups']) or 'none'}")
    print(f"curves: {result['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
