"""Markdown reports: our numbers, the paper's beside them, pictures and notes.

The paper's values live in :data:`PAPER_RESULTS` (one place). Only numbers the paper
(arXiv 2504.07954) reports are filled in; every other cell reads "not stated" rather than an
invented value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

NOT_STATED = "not stated"
BASE_MODEL = "Qwen2.5-VL-3B-Instruct"

# benchmark -> {"metrics": [(our key, shown name)], "base": {key: value}, "r1": {key: value},
#               "gain": stated gain of Perception-R1 over the base model}
PAPER_RESULTS: dict[str, dict] = {
    "refcoco": {
        "metrics": [("acc@0.5", "Acc@0.5 (%)")],
        "base": {},
        "r1": {},
        "gain": "+4.2% on RefCOCO+ over the base model",
    },
    "pixmo_count": {
        "metrics": [("accuracy", "accuracy (%)")],
        "base": {},
        "r1": {},
        "gain": "+17.9% on PixMo-Count over the base model",
    },
    "pageocr": {
        "metrics": [
            ("edit_distance", "edit distance ↓"),
            ("f1", "F1"),
            ("precision", "precision"),
            ("recall", "recall"),
            ("bleu", "BLEU"),
            ("meteor", "METEOR"),
        ],
        "base": {},
        "r1": {},
        "gain": "+4.2% on PageOCR over the base model",
    },
    "coco": {
        "metrics": [("AP", "AP"), ("AP50", "AP50"), ("AP75", "AP75"), ("APs", "APs"), ("APm", "APm"), ("APl", "APl")],
        "base": {},
        "r1": {"AP": 31.9},
        "gain": "31.9 AP on COCO2017 val (first MLLM at 3B scale above 30 AP)",
    },
}
# Metrics shown as percentages (the paper's convention); the OCR scores stay fractions.
PERCENT = {"acc@0.5", "acc@0.3", "acc@0.1", "miou", "centre_acc", "accuracy",
           "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}  # fmt: skip


def fmt(key: str, value) -> str:
    """A metric value for a table: % with one decimal, fractions with three, integers as is."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if key in PERCENT:
        return f"{100.0 * value:.1f}"
    return f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def metric_tables(metrics: Mapping) -> list[str]:
    """Overall metrics, then one row per group (``data_source/split``) when there are groups."""
    scalar = [(k, v) for k, v in metrics.items() if not isinstance(v, (dict, list))]
    lines = _table(["metric", "value"], [(k, fmt(k, v)) for k, v in scalar])
    groups = metrics.get("groups") or {}
    if groups:
        keys = [k for k in next(iter(groups.values())) if not isinstance(next(iter(groups.values()))[k], dict)]
        lines += ["", "Per split:", ""]
        lines += _table(["split", *keys], [(g, *(fmt(k, m.get(k)) for k in keys)) for g, m in groups.items()])
    return lines


def paper_table(benchmark: str, metrics: Mapping) -> list[str]:
    """Our overall numbers beside the paper's base-model and Perception-R1 rows."""
    spec = PAPER_RESULTS[benchmark]
    rows = []
    for key, name in spec["metrics"]:
        ours = fmt(key, metrics.get(key))
        base = spec["base"].get(key, NOT_STATED)
        r1 = spec["r1"].get(key, NOT_STATED)
        rows.append((name, ours, base, r1))
    lines = _table(["metric", "this run", f"{BASE_MODEL} (paper)", "Perception-R1 (paper)"], rows)
    lines += [
        "",
        f'Paper\'s stated result: {spec["gain"]}. "{NOT_STATED}": the paper does not report that number '
        "(arXiv 2504.07954).",
    ]
    if benchmark == "refcoco":
        for g, m in (metrics.get("groups") or {}).items():
            lines.append(f"- {g}: Acc@0.5 {fmt('acc@0.5', m.get('acc@0.5'))}")
    return lines


def write_report(
    out_dir: str | os.PathLike,
    benchmark: str,
    metrics: Mapping,
    *,
    data: str = "",
    responses: str = "",
    notes: Sequence[str] = (),
    images: Sequence[str] = (),
    plots: Sequence[str] = (),
    summary: str = "",
    warnings: Sequence[str] = (),
) -> str:
    """Write ``out_dir/report.md`` and return its path; picture paths are linked relative to it.

    ``warnings`` (what makes the numbers not comparable to the paper's) come first, under the title.
    """
    out_dir = os.fspath(out_dir)
    rel = lambda p: os.path.relpath(p, out_dir)  # noqa: E731
    lines = [f"# Evaluation: {benchmark}", ""]
    if data:
        lines.append(f"- data: `{data}`")
    if responses:
        lines.append(f"- responses: `{responses}`")
    if warnings:
        lines += ["", "## Not comparable to the paper", "", *[f"- **{w}**" for w in warnings]]
    lines += ["", "## Results", "", *metric_tables(metrics), ""]
    lines += ["## Comparison with the paper", "", *paper_table(benchmark, metrics), ""]
    if summary:
        lines += ["## pycocotools summary", "", "```", summary.rstrip(), "```", ""]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    if plots:
        lines += ["## Plots", "", *[f"![{os.path.basename(p)}]({rel(p)})" for p in plots], ""]
    if images:
        lines += ["## Overlays (green: ground truth, red: prediction)", ""]
        lines += [f"![{os.path.basename(p)}]({rel(p)})" for p in images]
        lines.append("")
    path = os.path.join(out_dir, "report.md")
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path
