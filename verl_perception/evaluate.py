"""Evaluate generated responses on a benchmark: metrics.json, report.md, overlays and a plot.

    python -m verl_perception.evaluate --task {refcoco,pixmo_count,pageocr,coco} \
        --data val.parquet --responses responses.jsonl [--ann-file instances_val2017.json] --out DIR

Writes ``DIR/metrics.json`` (all numbers, as fractions), ``DIR/per_row.jsonl`` (one record per
row), ``DIR/report.md`` (our numbers beside the paper's), ``DIR/overlays/*.png`` (prediction vs
ground truth on a sample of images) and ``DIR/plots/*.png``. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np

from verl_perception.metrics import BENCHMARK_TASK, task_module
from verl_perception.metrics.rows import EvalInputError, EvalRow, join_responses, read_parquet_rows, read_responses
from verl_perception.tasks import COUNTING, DETECTION, GROUNDING, OCR, UnknownTaskError, resolve_task

DEFAULT_OVERLAYS = 8


def check_task(rows: Sequence[EvalRow], benchmark: str) -> None:
    """Every row must belong to the benchmark's task (a wrong --task is a clear error)."""
    want = BENCHMARK_TASK[benchmark]
    for r in rows:
        try:
            got = resolve_task(r.data_source, r.extra_info)
        except UnknownTaskError as e:
            raise EvalInputError(f"row {r.position}: {e}") from e
        if got != want:
            raise EvalInputError(
                f"row {r.position} (data_source={r.data_source!r}) is a {got} row but --task {benchmark} "
                f"evaluates {want}: pass the matching --task or --data"
            )


def _xyxy(items: Sequence[dict]) -> list[list[float]]:
    return [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (x["bbox_xywh"] for x in items)]


def _overlays(task: str, rows: Sequence[EvalRow], per_row: Sequence[dict], out_dir: str, k: int, notes: list):
    from verl_perception import viz

    paths = []
    for pos in viz.sample_positions(len(rows), k):
        row, rec = rows[pos], per_row[pos]
        path = os.path.join(out_dir, "overlays", f"row{row.position:05d}.png")
        try:
            image = row.image()
        except EvalInputError as e:
            notes.append(f"row {row.position}: no overlay ({e})")
            continue
        if task == GROUNDING:
            cap = f"row {row.position} {rec['group']}: IoU {rec['iou']:.2f}" + (
                f" ({rec['why']})" if rec["why"] else ""
            )
            pred = [rec["pred_box"]] if rec["pred_box"] else []
            viz.overlay_boxes(image, row.orig_size, [rec["gt_box"]], pred, path, cap)
        elif task == COUNTING:
            cap = f"row {row.position}: predicted {rec['pred_count']}, ground truth {rec['gt_count']}"
            viz.overlay_points(image, row.orig_size, rec["gt_points"], rec["pred_points"], path, cap)
        elif task == DETECTION:
            gt, pred = rec["gt"], rec["pred"]
            cap = f"row {row.position} image {rec['image_id']}: {rec['boxes']} predicted boxes, {len(gt)} ground truth"
            viz.overlay_boxes(image, row.orig_size, _xyxy(gt), _xyxy(pred), path, cap,
                              [x["label"] for x in gt], [x["label"] for x in pred])  # fmt: skip
        else:
            cap = f"row {row.position}: edit distance {rec['edit_distance']:.3f}"
            viz.overlay_text(image, rec["gt_text"], rec["pred_text"], path, cap)
        paths.append(path)
    return paths


def _plots(task: str, metrics: dict, per_row: Sequence[dict], out_dir: str) -> list[str]:
    from verl_perception import viz

    plots = os.path.join(out_dir, "plots")
    if task == GROUNDING:
        ious = [r["iou"] for r in per_row]
        title = "IoU with the ground-truth box (original frame)"
        return [viz.histogram(ious, os.path.join(plots, "iou_hist.png"), title, "IoU", np.linspace(0, 1, 21), 0.5)]
    if task == COUNTING:
        err = [r["pred_count"] - r["gt_count"] for r in per_row]
        return [viz.count_error_histogram(err, os.path.join(plots, "count_error_hist.png"))]
    if task == OCR:
        ed = [r["edit_distance"] for r in per_row]
        return [viz.histogram(ed, os.path.join(plots, "edit_distance_hist.png"), "normalised edit distance per page",
                              "edit distance (lower is better)", bins=np.linspace(0, 1, 21))]  # fmt: skip
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return []
    return [viz.bar_chart(per_class, os.path.join(plots, "per_class_ap.png"), "AP per category (IoU .50:.95)")]


def evaluate_benchmark(
    benchmark: str,
    data: str | os.PathLike,
    responses: str | os.PathLike,
    out_dir: str | os.PathLike,
    ann_file: str | os.PathLike | None = None,
    n_overlays: int = DEFAULT_OVERLAYS,
    limit: int | None = None,
) -> dict:
    """Evaluate one benchmark and write its files; returns the metrics.json content."""
    if benchmark not in BENCHMARK_TASK:
        raise EvalInputError(f"unknown benchmark {benchmark!r}: choose one of {sorted(BENCHMARK_TASK)}")
    task = BENCHMARK_TASK[benchmark]
    if ann_file and task != DETECTION:
        raise EvalInputError("--ann-file is only used by --task coco")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    raw = read_parquet_rows(data, limit)
    if not raw:
        raise EvalInputError(f"{os.fspath(data)} has no rows")
    answers = read_responses(responses)
    if limit is not None:  # responses past the first `limit` rows are not evaluated
        answers = [a for i, a in enumerate(answers) if int(a.get("row", i)) < len(raw)]
    rows = join_responses(raw, answers)
    check_task(rows, benchmark)
    missing = sum(r.response is None for r in rows)

    mod = task_module(task)
    result = mod.evaluate(rows, ann_file=ann_file) if task == DETECTION else mod.evaluate(rows)
    metrics, per_row = result["metrics"], result["per_row"]
    notes = list(result.get("notes", []))
    if missing:
        notes.insert(0, f"{missing} of {len(rows)} rows have no response (scored as empty answers)")

    with open(os.path.join(out_dir, "per_row.jsonl"), "w", encoding="utf-8") as f:
        for rec in per_row:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    try:
        plots = _plots(task, metrics, per_row, out_dir)
    except ImportError as e:  # matplotlib is only needed for the plots
        plots = []
        notes.append(f"no plot: {e} (pip install matplotlib)")
    overlays = _overlays(task, rows, per_row, out_dir, n_overlays, notes)

    from verl_perception.report import write_report

    report = write_report(
        out_dir, benchmark, metrics, data=os.fspath(data), responses=os.fspath(responses), notes=notes,
        images=overlays, plots=plots, summary=result.get("summary", ""),
    )  # fmt: skip
    doc = {
        "benchmark": benchmark,
        "task": task,
        "data": os.fspath(data),
        "responses": os.fspath(responses),
        "ann_file": os.fspath(ann_file) if ann_file else None,
        "n_rows": len(rows),
        "missing_responses": missing,
        "metrics": metrics,
        "notes": notes,
        "report": report,
        "overlays": overlays,
        "plots": plots,
    }
    with open(os.path.join(out_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
    return doc


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m verl_perception.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--task", required=True, choices=sorted(BENCHMARK_TASK), help="benchmark to evaluate")
    p.add_argument("--data", required=True, help="the parquet the responses were generated from")
    p.add_argument("--responses", required=True, help="responses.jsonl written by verl_perception.generate")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--ann-file", default=None, help="COCO instances json (coco only; default: GT from the parquet)")
    p.add_argument("--overlays", type=int, default=DEFAULT_OVERLAYS, help="how many rows get an overlay PNG")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N rows only")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        doc = evaluate_benchmark(
            args.task, args.data, args.responses, args.out, args.ann_file, args.overlays, args.limit
        )
    except EvalInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = {k: v for k, v in doc["metrics"].items() if not isinstance(v, (dict, list))}
    print(json.dumps(m, indent=None))
    print(f"report: {doc['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
