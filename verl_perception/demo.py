"""The whole pipeline on the bundled samples, on CPU, in a few minutes: ``verl-perception demo``.

Stages, each the real code a GPU run uses:

1. preprocess the bundled raw samples to verl parquet (:mod:`verl_perception.preprocess.samples`);
2. build the tiny random-init Qwen2.5-VL (or, with ``--model-family qwen3_vl``, Qwen3-VL) offline
   (:mod:`verl_perception.tiny_model`);
3. generate greedy answers for each task's val split (:mod:`verl_perception.generate`, HF backend,
   vision tokens forbidden because the model is random);
4. score every answer with the training reward (:func:`verl_perception.rewards.compute_score`);
5. evaluate each benchmark (:mod:`verl_perception.evaluate`) and write one summary report.

A random model answers gibberish, so its rewards and metrics are (near) zero: the point is that
every stage runs for real. So that the numbers can be checked too, steps 4 and 5 also run on the
*reference answers*: each row's ground truth written as the model should answer it (Qwen-VL
JSON in the family's convention: input-frame pixels for Qwen2.5-VL, 0..1000 of the image for
Qwen3-VL), which must get the top reward and a perfect benchmark score (AP 1.0,
Acc@0.5 100%, exact counts, edit distance 0) after the evaluation maps it back to the original
image. The same commands with a trained model give real numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

# Sample directory per benchmark (both named like the evaluate --task).
DEMO_TASKS = ("coco", "refcoco", "pixmo_count", "pageocr")
# Families the demo can build a tiny model of, as the report names them.
FAMILY_TITLES = {"qwen2_5_vl": "Qwen2.5-VL", "qwen3_vl": "Qwen3-VL"}
# The top reward of each benchmark's task with the default reward config.
MAX_REWARD = {"coco": 3.0, "refcoco": 2.0, "pixmo_count": 1.0, "pageocr": 1.0}


def score_file(data: str, responses: str, out: str) -> dict:
    """Reward of every response (``compute_score``), written as JSON lines; returns the means."""
    from verl_perception.metrics.rows import read_parquet_rows, read_responses
    from verl_perception.rewards import compute_score

    rows = read_parquet_rows(data)
    recs = {r["row"]: r for r in read_responses(responses)}
    scores, formats = [], []
    with open(out, "w", encoding="utf-8") as f:
        for pos, row in enumerate(rows):
            if pos not in recs:
                continue
            s = compute_score(row["data_source"], recs[pos]["response"], row["reward_model"]["ground_truth"],
                              row.get("extra_info"))  # fmt: skip
            scores.append(s["score"])
            formats.append(s["format"])
            f.write(json.dumps({"row": pos, **s}) + "\n")
    n = len(scores)
    return {"n": n, "mean_score": sum(scores) / n if n else 0.0, "format_rate": sum(formats) / n if n else 0.0}


def reference_answer(task: str, gt: dict, extra_info: dict | None = None) -> str:
    """The answer a perfect model gives for ``gt`` (input frame), in the prompt's answer format and
    the row's coordinate convention (:func:`verl_perception.frame.input_to_answer`)."""
    from verl_perception.frame import input_to_answer

    def coords(xy) -> list:
        return input_to_answer(xy, extra_info).tolist() if len(xy) else []

    label = str((extra_info or {}).get("expression") or (extra_info or {}).get("label") or "object")
    if task == "grounding":
        return json.dumps([{"bbox_2d": coords([gt["bbox"]])[0], "label": label}])
    if task == "counting":
        points = list(gt.get("points") or [])
        if not points and gt.get("count"):  # a count-only row: any points, the right number of them
            points = [[0, 0]] * int(gt["count"])
        return json.dumps([{"point_2d": p, "label": label} for p in coords(points)])
    if task == "detection":
        return json.dumps([{"bbox_2d": b, "label": lab} for b, lab in zip(coords(gt["boxes"]), gt["labels"])])
    return str(gt["text"])


def write_reference_answers(data: str, out: str, limit: int | None = None) -> int:
    """Reference answers of every row of ``data``, as a responses file (generate's format)."""
    from verl_perception.metrics.rows import read_parquet_rows
    from verl_perception.rewards import load_ground_truth
    from verl_perception.tasks import resolve_task

    rows = read_parquet_rows(data, limit=limit)
    with open(out, "w", encoding="utf-8") as f:
        for pos, row in enumerate(rows):
            info = row.get("extra_info") or {}
            task = resolve_task(row["data_source"], info)
            answer = reference_answer(task, load_ground_truth(row["reward_model"]["ground_truth"]), info)
            f.write(json.dumps({"row": pos, "index": info.get("index"), "data_source": row["data_source"],
                                "response": answer}) + "\n")  # fmt: skip
    return len(rows)


def _headline(task: str, metrics: dict) -> str:
    from verl_perception.metrics import HEADLINE
    from verl_perception.report import fmt

    key, _ = HEADLINE[task]
    return f"{key} {fmt(key, metrics.get(key))}"


def write_summary(out_dir: str, results: dict, elapsed: float, model_dir: str, family_title: str = "Qwen2.5-VL") -> str:
    """``out_dir/report.md``: one line per task, links to the task reports and a first overlay each."""
    lines = [
        "# verl-perception demo",
        "",
        f"Bundled samples -> parquet -> tiny random {family_title} (`{os.path.relpath(model_dir, out_dir)}`) -> "
        f"greedy answers -> rewards -> benchmark metrics, in {elapsed:.0f} s on CPU. The model is random, so "
        "near-zero numbers are expected: every stage ran for real.",
        "",
        "| benchmark | answers by | rows | mean reward | format rate | headline metric | report |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, r in results.items():
        for who, key in (("tiny random model", ""), ("reference answers", "reference_")):
            ev, reward = r[key + "eval"], r[key + "reward"]
            rep = os.path.relpath(ev["report"], out_dir)
            lines.append(
                f"| {task} | {who} | {ev['n_rows']} | {reward['mean_score']:.3f} | {reward['format_rate']:.2f} | "
                f"{_headline(task, ev['metrics'])} | [{rep}]({rep}) |"
            )
    lines += [
        "",
        "Reference answers are the ground truth written as the model should answer: they check the "
        f"rewards (maxima: {', '.join(f'{t} {m}' for t, m in MAX_REWARD.items())}) and the metrics "
        "(mapped back to the original image), so these rows must show perfect scores.",
        "",
    ]
    for task, r in results.items():
        # prediction-vs-truth pictures: the random model's when it predicted anything, and always
        # the reference answers' (where red must cover green)
        shown = [("tiny random model", r["eval"]["overlays_with_prediction"][:1]),
                 ("reference answers", r["reference_eval"]["overlays_with_prediction"][:1])]  # fmt: skip
        lines += [f"## {task}", ""]
        for who, paths in shown:
            for path in paths:
                p = os.path.relpath(path, out_dir)
                lines += [f"{who}:", "", f"![{task}, {who}]({p})", ""]
        if not r["eval"]["overlays_with_prediction"]:
            lines += ["The tiny random model predicted nothing to draw on these rows (its overlays, ground truth "
                      f"only, are in [{task}/eval/report.md]({task}/eval/report.md)).", ""]  # fmt: skip
        quoted = json.dumps(r["first_response"], ensure_ascii=False)  # a random model's newlines stay visible
        lines += ["First answer of the random model (JSON-quoted, truncated):", "", "```", quoted[:300], "```", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def run_demo(
    out_dir: str | os.PathLike = "verl-perception-demo",
    *,
    tasks: tuple[str, ...] = DEMO_TASKS,
    limit: int | None = None,
    max_new_tokens: int = 64,
    batch_size: int = 4,
    n_overlays: int = 4,
    progress: bool = True,
    log=print,
    model_family: str | None = None,
) -> dict:
    """Run the demo into ``out_dir``; returns ``{"report": path, "tasks": {task: {...}}}``.

    ``limit`` caps the rows per task (None: all val rows of the samples). ``model_family``:
    ``qwen2_5_vl`` (default) or ``qwen3_vl``, the tiny model and the frame of the parquet.
    """
    from verl_perception.frame import get_family
    from verl_perception.evaluate import evaluate_benchmark
    from verl_perception.generate import HFGenerator, generate_file
    from verl_perception.metrics.rows import read_responses
    from verl_perception.preprocess.samples import convert_samples
    from verl_perception.tiny_model import build_tiny_model

    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the model's save/load bars
    t0 = time.time()
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    data_dir = os.path.join(out_dir, "data")
    family = get_family(model_family)
    title = FAMILY_TITLES.get(family.name, family.name)
    log(f"[1/5] preprocessing the bundled samples for {title} -> {data_dir}")
    convert_samples(data_dir, tasks=tuple(tasks), model_family=family.name)
    model_dir = os.path.join(out_dir, "tiny_model")
    log(f"[2/5] building the tiny random {title} -> {model_dir}")
    build_tiny_model(model_dir, family, seed=0, dtype="float32")
    generator = HFGenerator(model_dir, device="cpu", dtype="float32", forbid_vision_tokens=True)
    results = {}
    for task in tasks:
        data = os.path.join(data_dir, task, "val.parquet")
        task_dir = os.path.join(out_dir, task)
        os.makedirs(task_dir, exist_ok=True)
        responses = os.path.join(task_dir, "responses.jsonl")
        if os.path.exists(responses):
            os.remove(responses)  # a demo always answers afresh
        log(f"[3/5] {task}: generating answers")
        gen = generate_file(model_dir, data, responses, batch_size=batch_size, max_new_tokens=max_new_tokens,
                            limit=limit, generator=generator, progress=progress)  # fmt: skip
        log(f"[4/5] {task}: scoring {gen['rows']} answers with compute_score")
        reward = score_file(data, responses, os.path.join(task_dir, "rewards.jsonl"))
        log(f"[5/5] {task}: evaluating")
        ev = evaluate_benchmark(
            task, data, responses, os.path.join(task_dir, "eval"), n_overlays=n_overlays, limit=limit
        )
        first = read_responses(responses)[0]["response"] if gen["rows"] else ""
        log(f"      {task}: scoring and evaluating the reference answers (ground truth as answers)")
        ref_dir = os.path.join(task_dir, "reference")
        os.makedirs(ref_dir, exist_ok=True)
        ref_responses = os.path.join(ref_dir, "responses.jsonl")
        write_reference_answers(data, ref_responses, limit=limit)
        ref_reward = score_file(data, ref_responses, os.path.join(ref_dir, "rewards.jsonl"))
        ref_ev = evaluate_benchmark(task, data, ref_responses, os.path.join(ref_dir, "eval"), n_overlays=1, limit=limit)
        results[task] = {"generate": gen, "reward": reward, "eval": ev, "first_response": first,
                         "reference_reward": ref_reward, "reference_eval": ref_ev}  # fmt: skip
    report = write_summary(out_dir, results, time.time() - t0, model_dir, title)
    with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({t: {"reward": r["reward"], "metrics": r["eval"]["metrics"], "report": r["eval"]["report"],
                       "overlays": r["eval"]["overlays"], "reference_reward": r["reference_reward"],
                       "reference_metrics": r["reference_eval"]["metrics"]}
                   for t, r in results.items()}, f, indent=2)  # fmt: skip
    return {"report": report, "tasks": results, "seconds": time.time() - t0}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="verl-perception demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="verl-perception-demo", help="output directory (default: ./verl-perception-demo)")
    p.add_argument("--tasks", nargs="+", choices=DEMO_TASKS, default=list(DEMO_TASKS))
    p.add_argument("--limit", type=int, default=None, help="rows per task (default: every sample val row)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--model-family", default="qwen2_5_vl", choices=list(FAMILY_TITLES),
                   help="tiny model and parquet frame: qwen2_5_vl (default) or qwen3_vl")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    res = run_demo(args.out, tasks=tuple(args.tasks), limit=args.limit, max_new_tokens=args.max_new_tokens,
                   batch_size=args.batch_size, progress=not args.no_progress,
                   model_family=args.model_family)  # fmt: skip
    print(f"{'':12s} {'tiny random model':>34s} | {'reference answers (must be perfect)':>36s}")
    for task, r in res["tasks"].items():
        ours = f"reward {r['reward']['mean_score']:.3f}  {_headline(task, r['eval']['metrics'])}"
        ref = f"reward {r['reference_reward']['mean_score']:.3f}  {_headline(task, r['reference_eval']['metrics'])}"
        print(f"{task:12s} {ours:>34s} | {ref:>36s}")
    print(f"demo finished in {res['seconds']:.0f} s; report: {res['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
