"""The learning check's verdict: did GRPO raise the validation reward and Acc@0.5 by a margin?

Reads the metrics verl logged during a ``recipes/learning_check.sh`` run, either the JSON lines of
verl's ``file`` logger (``{"step": N, "data": {...}}`` per line, ``VERL_FILE_LOGGER_PATH``) or the
console log (``step:N - key:value - key:value ...`` lines, Ray's ``(TaskRunner pid=...)`` prefix and
colour codes allowed), and compares the first validation (step 0, ``trainer.val_before_train``) with
the last one. verl names validation metrics per data_source:

    val-core/<data_source>/reward/mean@1     mean reward (grounding: IoU² + format, 0..2)
    val-aux/<data_source>/hit50/mean@1       Acc@0.5 (the grounding reward's ``hit50``)
    val-aux/<data_source>/iou/mean@1         mean IoU;  val-aux/<data_source>/format/mean@1: format rate

The check passes when the reward rises by at least ``--min-reward-gain`` and Acc@0.5 by at least
``--min-acc-gain``; the defaults (:data:`MARGINS`) come from the run-to-run noise measured on an H200
(docs/recipes.md, "Learning check").

It also writes a plot of the reward curve (training ``critic/score/mean`` per step, validation reward
and Acc@0.5 at each validation) and a ``summary.json`` next to the run.

    python -m verl_perception.learning_check --run-dir RUN [--data-source synthetic_shapes]
        [--min-reward-gain 0.01] [--min-acc-gain 0.02]
    python -m verl_perception.learning_check --compare RUN_DIR RUN_DIR ... [--plot PNG]   # gains, spread

Exit status: 0 the check passed, 1 it failed (no rise, or too small), 2 the metrics cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from verl_perception.curves import pyplot, save_figure
from verl_perception.training_logs import Record, console_records, metrics_jsonl_records

METRICS_FILE = "metrics.jsonl"
CONSOLE_FILE = "console.log"
PLOT_FILE = "reward_curve.png"
SUMMARY_FILE = "summary.json"
TRAIN_REWARD = "critic/score/mean"

# The verdict's margins, from the noise measured on an H200 (docs/recipes.md, "Learning check"). The 256
# validation rows are answered greedily, the same rows before and after, so row sampling cancels; what is
# left is (a) evaluation noise: identical weights validated in different runs differ by <= 0.0007 reward and
# <= 2 rows (0.0078) Acc@0.5, and a run at lr 0 moved by +0.0001 and 0 after 5 steps; (b) the spread of the
# training itself: at lr 1e-4, two seeds gained +0.027 and +0.028 reward, +0.027 and +0.066 Acc@0.5 after
# 10 steps. The margins sit far above (a) (14x the reward's, 6 rows where noise moved 2) and near a third
# of the reward gain in (b), so a run that does not learn (lr 0, a flat or wrong reward) fails and one that
# learns for 10 steps passes. They test that GRPO teaches, not how much: longer runs gain more.
MARGINS = {"reward": 0.01, "acc@0.5": 0.02}


class MetricsError(ValueError):
    """The run's metrics are missing or lack the validation figures (the message says which)."""


# ----------------------------------------------------------------------------- reading
def _history(records: Iterable[Record]) -> dict[int, dict[str, float]]:
    history: dict[int, dict[str, float]] = {}
    for step, data in records:
        history.setdefault(step, {}).update(data)
    return history


def read_metrics_jsonl(lines: Iterable[str], name: str = METRICS_FILE) -> dict[int, dict[str, float]]:
    """verl ``file`` logger lines ``{"step": N, "data": {...}}`` -> ``{step: {key: value}}`` (finite numbers;
    a last line cut by a killed run is skipped, any other malformed line is a :class:`MetricsError`)."""
    try:
        return _history(metrics_jsonl_records(lines, name))
    except ValueError as e:
        raise MetricsError(str(e)) from e


def read_console(lines: Iterable[str]) -> dict[int, dict[str, float]]:
    """Console log lines -> ``{step: {key: value}}`` (:func:`verl_perception.training_logs.parse_console_line`)."""
    return _history(console_records(lines))


def read_run(run_dir: str) -> tuple[dict[int, dict[str, float]], str]:
    """The run's metrics: ``metrics.jsonl`` when it holds validation figures, else ``console.log``.

    Returns ``(history, path read)``; :class:`MetricsError` when neither file exists.
    """
    tried = []
    for name in (METRICS_FILE, CONSOLE_FILE):
        path = os.path.join(run_dir, name)
        if not os.path.isfile(path):
            tried.append(f"{path} (missing)")
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            history = read_metrics_jsonl(f, path) if name == METRICS_FILE else read_console(f)
        if any(k.startswith("val-") for row in history.values() for k in row):
            return history, path
        tried.append(f"{path} (no validation metrics)")
    raise MetricsError("no validation metrics found: " + "; ".join(tried))


# ----------------------------------------------------------------------------- the verdict
def metric_keys(data_source: str) -> dict[str, str]:
    """verl's validation metric names of the figures the check reads."""
    return {
        "reward": f"val-core/{data_source}/reward/mean@1",
        "acc@0.5": f"val-aux/{data_source}/hit50/mean@1",
        "iou": f"val-aux/{data_source}/iou/mean@1",
        "format": f"val-aux/{data_source}/format/mean@1",
    }


def training_curve(history: Mapping[int, Mapping[str, float]]) -> list[tuple[int, float]]:
    """``[(step, critic/score/mean)]``: the mean reward of each training batch."""
    return [(s, row[TRAIN_REWARD]) for s, row in sorted(history.items()) if TRAIN_REWARD in row]


def validation_curve(history: Mapping[int, Mapping[str, float]], data_source: str) -> list[dict[str, float]]:
    """``[{"step", "reward", "acc@0.5", "iou", "format"}]`` at every step that has the validation reward."""
    keys = metric_keys(data_source)
    out = []
    for step in sorted(history):
        row = history[step]
        if keys["reward"] in row:
            out.append({"step": step, **{name: row.get(key, math.nan) for name, key in keys.items()}})
    return out


@dataclass
class Verdict:
    passed: bool
    data_source: str
    before: dict
    after: dict
    gains: dict
    margins: dict
    reasons: list

    def format(self) -> str:
        lines = [f"learning check on {self.data_source}: validation before (step {self.before['step']}) "
                 f"-> after (step {self.after['step']})"]  # fmt: skip
        for name in ("reward", "acc@0.5", "iou", "format"):
            b, a = self.before.get(name, math.nan), self.after.get(name, math.nan)
            margin = self.margins.get(name)
            need = f"   (needs >= +{margin:.3f})" if margin is not None else ""
            lines.append(f"  {name:8s} {b:7.4f} -> {a:7.4f}   gain {a - b:+.4f}{need}")
        lines.append("LEARNING CHECK PASSED" if self.passed else "LEARNING CHECK FAILED: " + "; ".join(self.reasons))
        return "\n".join(lines)


def judge(
    history: Mapping[int, Mapping[str, float]],
    data_source: str,
    min_reward_gain: float = MARGINS["reward"],
    min_acc_gain: float = MARGINS["acc@0.5"],
) -> Verdict:
    """Compare the first and the last validation. :class:`MetricsError` unless there are two validations
    (at different steps) with the reward and Acc@0.5 of ``data_source``."""
    curve = validation_curve(history, data_source)
    keys = metric_keys(data_source)
    if len(curve) < 2:
        have = sorted({k for row in history.values() for k in row if k.startswith("val-")})
        raise MetricsError(
            f"need a validation before and after training for data_source {data_source!r} ({keys['reward']}), "
            f"found {len(curve)}; validation metrics present: {have[:8]}"
        )
    before, after = curve[0], curve[-1]
    for name in ("reward", "acc@0.5"):
        for when, point in (("before", before), ("after", after)):
            if not math.isfinite(point[name]):
                raise MetricsError(f"{keys[name]} is missing at the {when} validation (step {point['step']})")
    margins = {"reward": float(min_reward_gain), "acc@0.5": float(min_acc_gain)}
    gains = {name: after[name] - before[name] for name in ("reward", "acc@0.5", "iou", "format")}
    reasons = [
        f"{name} rose by {gains[name]:+.4f} < {margins[name]:.4f}" for name in margins if not gains[name] >= margins[name]
    ]
    return Verdict(not reasons, data_source, before, after, gains, margins, reasons)


def compare(run_dirs: Iterable[str], data_source: str = "synthetic_shapes") -> dict[str, Any]:
    """Before/after/gain of each run, and the spread of the gains across runs (run-to-run noise).

    Returns ``{"runs": [{"run", "before", "after", "gains", "history"}], "spread": {metric: max gain - min
    gain}, "mean_gain": {metric: mean gain}}`` for the reward, Acc@0.5, IoU and format rate (``history``: the
    metrics read, for :func:`plot_runs`). Runs whose metrics cannot be read are listed with an ``"error"``
    instead.
    """
    names = tuple(metric_keys(data_source))
    runs: list[dict[str, Any]] = []
    for run_dir in run_dirs:
        try:
            history, _ = read_run(run_dir)
            v = judge(history, data_source, min_reward_gain=-math.inf, min_acc_gain=-math.inf)
        except MetricsError as e:
            runs.append({"run": run_dir, "error": str(e)})
            continue
        runs.append({"run": run_dir, "before": v.before, "after": v.after, "gains": v.gains, "history": history})
    ok = [r for r in runs if "gains" in r]
    spread = {n: max(r["gains"][n] for r in ok) - min(r["gains"][n] for r in ok) for n in names} if ok else {}
    mean = {n: sum(r["gains"][n] for r in ok) / len(ok) for n in names} if ok else {}
    return {"runs": runs, "spread": spread, "mean_gain": mean}


def format_comparison(result: Mapping[str, Any]) -> str:
    lines = [f"{'run':40s} {'reward before -> after (gain)':32s} {'Acc@0.5 before -> after (gain)':32s}"]
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"{r['run'][-40:]:40s} cannot read: {r['error']}")
            continue
        b, a, g = r["before"], r["after"], r["gains"]
        lines.append(f"{r['run'][-40:]:40s} {b['reward']:.4f} -> {a['reward']:.4f} ({g['reward']:+.4f})      "
                     f"{b['acc@0.5']:.4f} -> {a['acc@0.5']:.4f} ({g['acc@0.5']:+.4f})")  # fmt: skip
    if result["spread"]:
        lines.append("gains across runs: " + ", ".join(
            f"{n} mean {result['mean_gain'][n]:+.4f} spread {result['spread'][n]:.4f}" for n in ("reward", "acc@0.5")))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the plot
def plot(history: Mapping[int, Mapping[str, float]], data_source: str, path: str, title: str = "") -> str:
    """Reward per training step (``critic/score/mean``) and the validation reward and Acc@0.5 at each
    validation, on one figure written to ``path`` (PNG)."""
    plt = pyplot()
    train = training_curve(history)
    curve = validation_curve(history, data_source)
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], color="tab:blue", alpha=0.8, label="train reward (mean)")
    if curve:
        ax.plot([p["step"] for p in curve], [p["reward"] for p in curve], "o-", color="tab:red",
                label="validation reward (greedy)")  # fmt: skip
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward (IoU² + format, 0..2)")
    if curve:
        ax2 = ax.twinx()
        ax2.plot([p["step"] for p in curve], [p["acc@0.5"] for p in curve], "s--", color="tab:green",
                 label="validation Acc@0.5")  # fmt: skip
        ax2.set_ylabel("Acc@0.5")
        ax2.set_ylim(0, 1)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="lower right", fontsize=8)
    ax.set_title(title or f"learning check: {data_source}")
    ax.grid(alpha=0.3)
    return save_figure(plt, fig, path, dpi=120)


def plot_runs(result: Mapping[str, Any], data_source: str, path: str, title: str = "") -> str:
    """The runs of a :func:`compare` result on one figure written to ``path`` (PNG): the training reward per
    step (left) and the validation reward and Acc@0.5 at each validation (right), one colour per run (named
    after its directory). A run whose metrics could not be read is left out (``compare`` names it)."""
    plt = pyplot()
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_acc = ax_val.twinx()
    for i, run in enumerate(result["runs"]):
        if "history" not in run:
            continue
        history = run["history"]
        color, name = f"C{i % 10}", os.path.basename(os.path.normpath(run["run"]))
        train = training_curve(history)
        ax_train.plot([s for s, _ in train], [v for _, v in train], color=color, alpha=0.8, label=name)
        curve = validation_curve(history, data_source)
        steps = [p["step"] for p in curve]
        ax_val.plot(steps, [p["reward"] for p in curve], "o-", color=color, label=f"{name}: reward")
        ax_acc.plot(steps, [p["acc@0.5"] for p in curve], "s--", color=color, alpha=0.6, label=f"{name}: Acc@0.5")
    ax_train.set_title("training reward (mean of the rollouts)")
    ax_train.set_xlabel("GRPO step")
    ax_train.set_ylabel("reward (IoU² + format, 0..2)")
    ax_train.legend(fontsize=8)
    ax_val.set_title("validation (greedy): reward (o-), Acc@0.5 (s--)")
    ax_val.set_xlabel("GRPO step")
    ax_val.set_ylabel("reward")
    ax_acc.set_ylabel("Acc@0.5")
    h1, l1 = ax_val.get_legend_handles_labels()
    h2, l2 = ax_acc.get_legend_handles_labels()
    ax_val.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"learning check runs: {data_source}")
    return save_figure(plt, fig, path, dpi=120)


# ----------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_perception.learning_check", description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", help=f"the run's directory ({METRICS_FILE} and/or {CONSOLE_FILE})")
    p.add_argument("--compare", nargs="+", metavar="RUN_DIR",
                   help="print the before/after figures of several runs and the spread of their gains")
    p.add_argument("--data-source", default="synthetic_shapes")
    p.add_argument("--min-reward-gain", type=float, default=MARGINS["reward"],
                   help=f"required rise of the validation reward (default {MARGINS['reward']})")
    p.add_argument("--min-acc-gain", type=float, default=MARGINS["acc@0.5"],
                   help=f"required rise of Acc@0.5 (default {MARGINS['acc@0.5']})")
    p.add_argument("--plot", metavar="PNG", help="with --compare: draw every run's curves on one figure here")
    p.add_argument("--title", default="", help="plot title")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:
        result = compare(args.compare, args.data_source)
        print(format_comparison(result))
        if args.plot:
            print(f"plot: {plot_runs(result, args.data_source, args.plot, args.title)}")
        return 0 if all("gains" in r for r in result["runs"]) else 2
    if not args.run_dir:
        build_parser().error("--run-dir or --compare is required")
    try:
        history, source = read_run(args.run_dir)
        verdict = judge(history, args.data_source, args.min_reward_gain, args.min_acc_gain)
    except MetricsError as e:
        print(f"learning check: cannot judge the run in {args.run_dir}: {e}", file=sys.stderr)
        return 2
    plot_path = plot(history, args.data_source, os.path.join(args.run_dir, PLOT_FILE), args.title)
    summary = {**asdict(verdict), "metrics_read": source, "plot": plot_path,
               "validation_curve": validation_curve(history, args.data_source)}  # fmt: skip
    with open(os.path.join(args.run_dir, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    print(verdict.format())
    print(f"plot: {plot_path}\nsummary: {os.path.join(args.run_dir, SUMMARY_FILE)}")
    return 0 if verdict.passed else 1


if __name__ == "__main__":
    sys.exit(main())
