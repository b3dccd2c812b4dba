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
from collections import Counter
from collections.abc import Sequence

import numpy as np

from verl_perception.metrics import BENCHMARK_TASK, task_module
from verl_perception.metrics.rows import (
    EvalInputError,
    EvalRow,
    invalid_responses,
    join_responses,
    read_parquet_rows,
    read_responses,
)
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


def check_out_dir(out_dir: str) -> None:
    """Create the output directory, or say in one line why it cannot be (:class:`EvalInputError`)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise EvalInputError(f"--out {out_dir!r} is a file: pass a directory for metrics.json and report.md")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise EvalInputError(
            f"--out {out_dir!r} cannot be created ({e.strerror or e}): pass a writable directory"
        ) from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise EvalInputError(f"--out {out_dir!r} is not writable: pass a writable directory")


def check_ann_file(ann_file) -> None:
    """``--ann-file`` must be a readable COCO instances JSON (read again by pycocotools)."""
    path = os.fspath(ann_file)
    if not os.path.isfile(path):
        raise EvalInputError(f"--ann-file {path!r} does not exist (or is not a file): pass instances_val2017.json")
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise EvalInputError(
            f"--ann-file {path!r} is not readable JSON ({e}); it is truncated or not a COCO instances file: "
            "re-download it"
        ) from None
    if not isinstance(doc, dict) or not all(k in doc for k in ("images", "annotations", "categories")):
        raise EvalInputError(
            f"--ann-file {path!r} is not a COCO instances file (needs images, annotations, categories)"
        )


def input_warnings(answers: Sequence[dict], n_rows: int, limit: int | None) -> list[str]:
    """What in the responses file (or ``--limit``) makes the numbers not comparable to the paper.

    ``answers``: the response lines; ``n_rows``: rows read from the parquet (after ``limit``).
    Missing responses are counted after the join (see :func:`evaluate_benchmark`).
    """
    warnings = []
    if limit is not None and n_rows >= limit:  # fewer rows: the whole file was read
        warnings.append(
            f"--limit {limit}: only the first {n_rows} rows were evaluated; the paper reports whole benchmark splits"
        )
    keyed = [int(a["row"]) for a in answers if "row" in a]
    repeated = sum(n - 1 for n in Counter(keyed).values() if n > 1)
    if repeated:
        what = "1 extra response line repeats" if repeated == 1 else f"{repeated} extra response lines repeat"
        warnings.append(f"{what} a row already answered (the last line of a row is used)")
    past = sum(1 for i, a in enumerate(answers) if int(a.get("row", i)) >= n_rows)
    if past and limit is not None:
        lines = "1 response line is for a row" if past == 1 else f"{past} response lines are for rows"
        warnings.append(f"{lines} past --limit {limit} and {'was' if past == 1 else 'were'} not evaluated")
    return warnings


def _xyxy(items: Sequence[dict]) -> list[list[float]]:
    return [[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (x["bbox_xywh"] for x in items)]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}es" if word.endswith("x") else f"{n} {word}s"


def has_prediction(task: str, rec: dict) -> bool:
    """Whether a per-row record holds something predicted to draw (a box, points, boxes, text)."""
    if task == GROUNDING:
        return bool(rec.get("pred_box"))
    if task == COUNTING:
        return bool(rec.get("pred_points"))
    if task == DETECTION:
        return bool(rec.get("pred"))
    return bool((rec.get("pred_text") or "").strip())


def overlay_positions(task: str, per_row: Sequence[dict], k: int) -> list[int]:
    """``k`` rows to draw: rows with a prediction first (evenly spread), then the others."""
    from verl_perception.viz import sample_positions

    with_pred = [i for i, rec in enumerate(per_row) if has_prediction(task, rec)]
    without = [i for i, rec in enumerate(per_row) if not has_prediction(task, rec)]
    chosen = [with_pred[j] for j in sample_positions(len(with_pred), k)]
    chosen += [without[j] for j in sample_positions(len(without), k - len(chosen))]
    return chosen


def _question(row: EvalRow) -> str:
    """What the row asked: the referring expression (grounding) or the counted objects (counting)."""
    info = row.extra_info
    if info.get("expression"):
        return f'"{info["expression"]}"'
    if info.get("label"):
        return f"count the {info['label']}"
    return ""


def _overlays(task: str, rows: Sequence[EvalRow], per_row: Sequence[dict], out_dir: str, k: int, notes: list):
    from verl_perception import viz

    paths, with_prediction = [], []
    for pos in overlay_positions(task, per_row, k):
        row, rec = rows[pos], per_row[pos]
        path = os.path.join(out_dir, "overlays", f"row{row.position:05d}.png")
        try:
            image = row.image()
        except EvalInputError as e:
            notes.append(f"row {row.position}: no overlay ({e})")
            continue
        asked = _question(row)
        head = f"row {row.position}" + (f" ({rec['group']})" if rec.get("group") else "") + (f": {asked}" if asked else "")
        if task == GROUNDING:
            why = f" ({rec['why']})" if rec["why"] else ""
            cap = f"{head}\nIoU {rec['iou']:.2f}{why}"
            pred = [rec["pred_box"]] if rec["pred_box"] else []
            viz.overlay_boxes(image, row.orig_size, [rec["gt_box"]], pred, path, cap)
        elif task == COUNTING:
            cap = f"{head}\npredicted {rec['pred_count']}, ground truth {rec['gt_count']}"
            viz.overlay_points(image, row.orig_size, rec["gt_points"], rec["pred_points"], path, cap)
        elif task == DETECTION:
            gt, pred = rec["gt"], rec["pred"]
            cap = (f"{head}, image {rec['image_id']}\n{_plural(len(pred), 'predicted box')}, "
                   f"{_plural(len(gt), 'ground-truth box')}")  # fmt: skip
            viz.overlay_boxes(image, row.orig_size, _xyxy(gt), _xyxy(pred), path, cap,
                              [x["label"] for x in gt], [x["label"] for x in pred])  # fmt: skip
        else:
            cap = f"{head}: normalised edit distance {rec['edit_distance']:.3f}"
            pred_text = None if row.response is None else rec["pred_text"]
            viz.overlay_text(image, rec["gt_text"], pred_text, path, cap)
        paths.append(path)
        if has_prediction(task, rec):
            with_prediction.append(path)
    return paths, with_prediction


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
    check_out_dir(out_dir)
    if ann_file:
        check_ann_file(ann_file)
    raw = read_parquet_rows(data, limit)
    if not raw:
        raise EvalInputError(f"{os.fspath(data)} has no rows")
    answers = read_responses(responses)
    warnings = input_warnings(answers, len(raw), limit)
    if limit is not None:  # responses past the first `limit` rows are not evaluated
        answers = [a for i, a in enumerate(answers) if int(a.get("row", i)) < len(raw)]
    rows = join_responses(raw, answers)
    check_task(rows, benchmark)
    missing = sum(r.response is None for r in rows)
    if missing:
        warnings.insert(0, f"{missing} of {len(rows)} rows have no response (scored as empty answers)")
    invalid = invalid_responses(answers)
    if invalid:
        lines = "1 response line has" if invalid == 1 else f"{invalid} response lines have"
        warnings.insert(1, f"{lines} a null or non-string 'response' (counted as missing)")

    mod = task_module(task)
    result = mod.evaluate(rows, ann_file=ann_file) if task == DETECTION else mod.evaluate(rows)
    metrics, per_row = result["metrics"], result["per_row"]
    notes = list(result.get("notes", []))
    warnings += result.get("warnings", [])

    with open(os.path.join(out_dir, "per_row.jsonl"), "w", encoding="utf-8") as f:
        for rec in per_row:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    try:
        plots = _plots(task, metrics, per_row, out_dir)
    except ImportError as e:  # matplotlib is only needed for the plots
        plots = []
        notes.append(f"no plot: {e} (pip install matplotlib)")
    overlays, overlays_with_prediction = _overlays(task, rows, per_row, out_dir, n_overlays, notes)

    from verl_perception.report import write_report

    report = write_report(
        out_dir, benchmark, metrics, data=os.fspath(data), responses=os.fspath(responses), notes=notes,
        images=overlays, plots=plots, summary=result.get("summary", ""), warnings=warnings,
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
        "warnings": warnings,
        "notes": notes,
        "report": report,
        "overlays": overlays,
        "overlays_with_prediction": overlays_with_prediction,
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
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with status 1 when a warning says the numbers are not comparable to the paper's",
    )
    return p


def run(args: argparse.Namespace) -> int:
    try:
        doc = evaluate_benchmark(
            args.task, args.data, args.responses, args.out, args.ann_file, args.overlays, args.limit
        )
    except EvalInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    strict = getattr(args, "strict", False)
    for warning in doc["warnings"]:
        print(f"{'error' if strict else 'warning'}: {warning}", file=sys.stderr)
    m = {k: v for k, v in doc["metrics"].items() if not isinstance(v, (dict, list))}
    print(json.dumps(m, indent=None))
    print(f"report: {doc['report']}")
    if strict and doc["warnings"]:
        n = len(doc["warnings"])
        print(f"error: --strict: {n} warning{'s' if n != 1 else ''} above (the files are written)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
