"""Reward worst case: the slowest completion found per task, against the bound and a typical one.

    taskset -c 0 python benchmarks/reward_worst_case.py              # one-core figures (the bound)
    python benchmarks/reward_worst_case.py --random 400 --seed 1     # a longer random search

The bound (issue 23): scoring any completion up to the parser's length cap
(``verl_perception.parsing.MAX_CHARS`` characters; longer ones are read on their first
``MAX_CHARS``) costs at most 5 ms on one core, for ground truths of the size our data has (here: a
COCO image with 15 boxes, a grounding box, 50 counting points, a 2,000-character OCR page).

Adversarial families, each filled to the cap (and to a tenth of it): unclosed openers, deep
nesting, long repeated fragments (valid items, broken items, Qwen2-VL tuples, tags, fences),
huge numbers and digit runs, unterminated strings, many boxes/points; then a random search over
concatenations of JSON-ish fragments, and a hill climb from the slowest input found (mutating
its fragment). Each input is timed as the best of ``--repeats`` calls (process CPU time) of the
public ``compute_score`` with the ground truth as the JSON string verl passes. A typical
completion per task is timed in the same run (the anchor; the ratio is what to compare across
machines). Exits non-zero when an input beats the bound (``--no-assert`` to only print).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one-core figures; must precede numpy imports

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

from verl_perception.parsing import MAX_CHARS  # noqa: E402
from verl_perception.rewards import compute_score  # noqa: E402

BOUND_MS = 5.0
FRAME = {"input_size": [812, 532]}


def _rows() -> dict[str, tuple[str, str, str]]:
    """``{task: (data_source, ground truth JSON, typical completion)}``."""
    rng = random.Random(0)
    boxes = []
    for _ in range(15):
        x, y = rng.uniform(0, 400), rng.uniform(0, 700)
        boxes.append([round(x), round(y), round(x + rng.uniform(10, 120)), round(y + rng.uniform(10, 100))])
    labels = [rng.choice(["person", "car", "dog", "chair", "cup"]) for _ in boxes]
    det_answer = json.dumps([{"bbox_2d": [b[0] + 2, b[1] - 1, b[2] + 3, b[3]], "label": lab}
                             for b, lab in zip(boxes[:12], labels)])
    points = [[round(rng.uniform(0, 532)), round(rng.uniform(0, 812))] for _ in range(50)]
    words = " ".join(rng.choice(["the", "page", "reads", "text", "of", "a", "scanned", "document"]) for _ in range(330))
    page = words[:2000]
    return {
        "detection": ("coco", json.dumps({"boxes": boxes, "labels": labels}),
                      f"<think>I see several objects.</think><answer>```json\n{det_answer}\n```</answer>"),
        "grounding": ("refcoco", json.dumps({"bbox": [40, 60, 200, 300]}),
                      '```json\n[{"bbox_2d": [42, 58, 203, 297], "label": "the man on the left"}]\n```'),
        "counting": ("pixmo_count", json.dumps({"points": points}),
                     json.dumps([{"point_2d": [p[0] + 1, p[1] - 2], "label": "apple"} for p in points[:48]])),
        "ocr": ("pageocr", json.dumps({"text": page}), page[:1900] + " extra words"),
    }


# Fragments for the families and the random search: JSON pieces, tags, fences, numbers, prose.
FRAGMENTS = [
    '[{"bbox_2d": [', '{"bbox_2d": [1, 2, 3, 4], "label": "person"}, ', '{"bbox_2d":[1,2,3,4] "label":"a"},',
    '{"point_2d": [3, 4]}, ', '[', '{', ']', '}', '{"a":', '[[', '"', '"x', ',', ':', ' ', '\n',
    '```json\n', '```', '<think>', '</think>', '<answer>', '</answer>', '(1,2),(3,4)', 'person(10,20),(30,40) ',
    '<|box_start|>(1,2),(3,4)<|box_end|>', '1' * 50, '1e999', '-1e308', 'NaN', 'Infinity', 'true', 'null',
    '[1]', 'the ', '\\u00e9', '\\', '9' * 4400, '{"objects": [', '"label": ', '0.5',
]


def families(cap: int) -> dict[str, str]:
    """Named adversarial inputs of about ``cap`` characters."""

    def fill(fragment: str, n: int = cap) -> str:
        return (fragment * (n // max(1, len(fragment)) + 1))[:n]

    valid = json.dumps([{"bbox_2d": [i % 500, i % 700, i % 500 + 20, i % 700 + 30], "label": "person"}
                        for i in range(cap // 40 + 1)])[:cap]
    points = json.dumps([{"point_2d": [i % 500, i % 700]} for i in range(cap // 24 + 1)])[:cap]
    out = {
        "unclosed '[{\"bbox_2d\": ['": fill('[{"bbox_2d": ['),
        "unclosed '{\"a\":'": fill('{"a":'),
        "unclosed '[{' pairs": fill("[{"),
        "deep nesting [[[...]]]": "[" * (cap // 2) + "]" * (cap // 2),
        "deep nesting {\"a\": ...}": '{"a":' * (cap // 6) + "1" + "}" * (cap // 6),
        "repeated valid items (cut)": valid,
        "repeated broken items": "[" + fill('{"bbox_2d":[1,2,3,4] "label":"a"},', cap - 1),
        "broken then valid": "[" + fill('{"bbox_2d":[1,2,3,4] "label":"a"},', cap // 2)
        + fill('{"bbox_2d":[1,2,3,4],"label":"a"},', cap // 2 - 1),
        "many points (cut)": points,
        "Qwen2-VL tuples": fill("person(10,20),(30,40) "),
        "Qwen2-VL tokens": fill("<|object_ref_start|>dog<|object_ref_end|><|box_start|>(1,2),(3,4)<|box_end|>"),
        "digit run after '('": "(" + "1" * (cap - 1),
        "huge integers in boxes": "[" + fill('{"bbox_2d":[' + "9" * 4400 + ',1,2,3]},', cap - 1),
        "huge floats": "[" + fill('{"bbox_2d":[1e999,-1e999,1e308,NaN],"label":"a"},', cap - 1),
        "unterminated string after items": "[" + '{"a":1,"b":' * 500 + '"' + "x" * (cap - 5502),
        "unclosed openers in a fence": "```json\n" + fill('[{"bbox_2d": [', cap - 8),
        "many fences": fill("```json\n[{\"bbox_2d\": [\n```\n"),
        "repeated think tags": fill("<think>a"),
        "repeated answer tags": fill("<answer>[{"),
        "prose with [1]": fill("see [1] and {2} "),
        "commas": "[{}" + "," * (cap - 3),
        "backslashes in a string": '[{"label": "' + "\\\\" * (cap // 2 - 8),
    }
    return out


def timed(data_source: str, gt: str, completion: str, repeats: int) -> float:
    """Best of ``repeats`` calls, in ms of process CPU time."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time_ns()
        compute_score(data_source, completion, gt, FRAME)
        best = min(best, (time.process_time_ns() - t0) / 1e6)
    return best


def random_input(rng: random.Random, cap: int) -> tuple[str, str]:
    k = rng.randint(1, 4)
    parts = [rng.choice(FRAGMENTS) for _ in range(k)]
    unit = "".join(parts)
    prefix = rng.choice(["", "<answer>", "```json\n", "[", "<think>x</think>"])
    text = prefix + (unit * (cap // max(1, len(unit)) + 1))
    return f"random: {prefix!r} + {unit[:60]!r} * n", text[:cap]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random", type=int, default=120, help="random inputs per task (after the families)")
    ap.add_argument("--climb", type=int, default=30, help="hill-climb steps per task from the slowest input")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per input (best kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-assert", action="store_true", help="print figures without failing on a missed bound")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    rng = random.Random(args.seed)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPU cores available to this process: {affinity} (use `taskset -c 0` for one-core figures)")
    print(f"bound: {BOUND_MS} ms per completion for any completion up to MAX_CHARS = {MAX_CHARS:,} characters\n")
    rows = _rows()
    fams = {**{f"{k} [{MAX_CHARS}]": v for k, v in families(MAX_CHARS).items()},
            **{f"{k} [{MAX_CHARS // 10}]": v for k, v in families(MAX_CHARS // 10).items()}}
    fams["over the cap: 3x unclosed openers"] = '[{"bbox_2d": [' * (3 * MAX_CHARS // 14)
    worst_overall = 0.0
    print(f"{'task':<10} {'typical ms':>10} {'worst ms':>9} {'x typical':>10} {'/ bound':>8}  slowest input found")
    report = []
    for task, (ds, gt, typical) in rows.items():
        for _ in range(20):  # warm caches (ground-truth decode, vocabulary), as in a training run
            compute_score(ds, typical, gt, FRAME)
        anchor = timed(ds, gt, typical, max(5, args.repeats * 3))
        results: list[tuple[float, str, str]] = []
        for name, text in fams.items():
            results.append((timed(ds, gt, text, args.repeats), name, text))
        for _ in range(args.random):
            name, text = random_input(rng, MAX_CHARS)
            results.append((timed(ds, gt, text, args.repeats), name, text))
        results.sort(key=lambda r: -r[0])
        best_ms, best_name, best_text = results[0]
        for _ in range(args.climb):  # mutate the slowest: splice a fragment in, repeated
            frag = rng.choice(FRAGMENTS)
            cut = rng.randrange(0, max(1, len(best_text)))
            text = (best_text[:cut] + frag * rng.randint(1, 2000) + best_text[cut:])[:MAX_CHARS]
            ms = timed(ds, gt, text, args.repeats)
            if ms > best_ms:
                best_ms, best_name, best_text = ms, best_name + f" + {frag[:20]!r} spliced", text
        best_ms = timed(ds, gt, best_text, args.repeats * 2)  # re-time the winner
        worst_overall = max(worst_overall, best_ms)
        print(f"{task:<10} {anchor:>10.3f} {best_ms:>9.3f} {best_ms / anchor:>10.1f} {best_ms / BOUND_MS:>8.2f}  "
              f"{best_name} ({len(best_text):,} chars: {best_text[:48]!r}...)")
        report.append((task, results[1:4]))
    print("\nrunners-up per task:")
    for task, runners in report:
        for ms, name, text in runners:
            print(f"  {task:<10} {ms:>8.3f} ms  {name} ({len(text):,} chars)")
    ok = worst_overall <= BOUND_MS
    print(f"\nslowest completion: {worst_overall:.3f} ms; bound {BOUND_MS} ms: " + ("met" if ok else "MISSED"))
    return 0 if ok or args.no_assert else 1


if __name__ == "__main__":
    sys.exit(main())
