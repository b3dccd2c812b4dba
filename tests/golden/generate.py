"""Golden regression cases for the rewards: fixed completions per task with their recorded scores.

Each ``tests/golden/<task>.jsonl`` line holds the inputs of one ``compute_score`` call
(``data_source``, ``solution_str``, ``ground_truth``, ``extra_info``, optional ``config``), a
``kind`` (realistic / garbage / adversarial, with a short description) and the ``expected``
result. The cases are generated deterministically from ``--seed`` (Python's ``random`` only,
whose seeded streams are stable across versions), so the files can always be rebuilt.

    python tests/golden/generate.py            # check: regenerate in memory, compare, exit 1 on change
    python tests/golden/generate.py --write    # regenerate the files on purpose (review the diff!)

tests/test_rewards_golden.py recomputes every case and fails on any change beyond 1e-9.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = ("grounding", "counting", "ocr", "detection")
SEED = 20250407
N_PER_TASK = 240
TOLERANCE = 1e-9

# A few frames Qwen2.5-VL produces with the recipes' pixel bounds (multiples of 28).
FRAMES = [(448, 644), (644, 448), (532, 812), (1008, 756), (336, 1204), (28, 56), (980, 980)]
LABELS = ["person", "car", "dog", "chair", "bottle", "cup", "traffic light", "dining table", "cell phone", "hot dog"]
UNKNOWN = ["automobile", "people", "puppy", "sofa", "tvmonitor", "cellphone", "", "PERSON!!", "标签"]
WORDS = (
    "the of and to in is was for on that with as by at from this be it are which an or were has have not "
    "table figure results method model data page section we our using between paper shown value total per "
    "Invoice Date Amount Qty 2023 12.50 € № café naïve résumé 東京 ΑΒΓ"
).split()
GARBAGE = [
    "",
    " ",
    "I cannot answer that.",
    "null",
    "true",
    "[",
    "]",
    "{}",
    "[]",
    "[[]]",
    "{{}}",
    "[1, 2, 3, 4]",
    '{"bbox_2d": null}',
    '[{"bbox_2d": "10,20,30,40"}]',
    '{"label": "person"}',
    "```json\n```",
    "<answer></answer>",
    "<think>",
    "</think>",
    "<think>I will look carefully",
    "((1,2),(3,4",
    '[{"bbox_2d": [NaN, NaN, NaN, NaN]}]',
    '[{"bbox_2d": [Infinity, 0, -Infinity, 5]}]',
    '[{"bbox_2d": [1e308, 1e308, -1e308, -1e308], "label": "person"}]',
    '[{"point_2d": [1e400, 5]}]',
    "😀🙃🤖" * 30,
    "\u202e\u200b\ufeff\x00",
    "جملة عربية",
    "<|box_start|><|box_end|>",
    '[{"bbox_2d": [true, false, true, false]}]',
    "[" * 500,
    "{" * 500,
    "(" * 500 + ")" * 500,
]


def _r(rng: random.Random, lo: float, hi: float, nd: int = 1) -> float:
    return round(rng.uniform(lo, hi), nd)


def _box(rng: random.Random, h: int, w: int) -> list[float]:
    bw, bh = _r(rng, 8, max(9, w * 0.6)), _r(rng, 8, max(9, h * 0.6))
    x1, y1 = _r(rng, 0, max(0.0, w - bw)), _r(rng, 0, max(0.0, h - bh))
    return [x1, y1, round(min(w, x1 + bw), 1), round(min(h, y1 + bh), 1)]


def _jitter(rng: random.Random, box: list[float], scale: float) -> list[float]:
    bw, bh = box[2] - box[0], box[3] - box[1]
    return [round(v + rng.gauss(0, scale) * (bw if i % 2 == 0 else bh), 1) for i, v in enumerate(box)]


def _wrap(rng: random.Random, payload: str) -> str:
    layout = rng.choice(["bare", "fence", "answer", "think", "prose_after", "prose_before", "fence_think"])
    if layout == "fence":
        return f"```json\n{payload}\n```"
    if layout == "answer":
        return f"<answer>{payload}</answer>"
    if layout == "think":
        return f"<think>Let me look at the image [step 1].</think>\n<answer>{payload}</answer>"
    if layout == "prose_after":
        return f"{payload}\nThese are all the objects I can see."
    if layout == "prose_before":
        return f"Here is the result:\n{payload}"
    if layout == "fence_think":
        return f"<think>ok</think>```json\n{payload}\n```"
    return payload


def _dump(items) -> str:
    return json.dumps(items, ensure_ascii=False)


def _case(kind, data_source, solution, gt, info, config=None) -> dict:
    case = {
        "kind": kind,
        "data_source": data_source,
        "solution_str": solution,
        "ground_truth": json.dumps(gt),
        "extra_info": info,
    }
    if config:
        case["config"] = config
    return case


def _garbage(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(GARBAGE)
    alphabet = "[]{}(),:\"' 0123456789.-eE abcxyz_<>/\n😀é"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))


def grounding_cases(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        h, w = rng.choice(FRAMES)
        info = {"task": "grounding", "index": i, "input_size": [h, w]}
        gt_box = _box(rng, h, w)
        gt = {"bbox": gt_box}
        ds = rng.choice(["refcoco", "refcoco+", "refcocog"])
        roll = rng.random()
        if roll < 0.55:
            pred = _jitter(rng, gt_box, rng.choice([0.0, 0.02, 0.1, 0.3, 1.0]))
            item = {"bbox_2d": pred, "label": rng.choice(["the man on the left", "red car", "dog"])}
            payload = _dump(item if rng.random() < 0.6 else [item])
            out.append(_case("realistic: jittered box", ds, _wrap(rng, payload), gt, info))
        elif roll < 0.7:
            out.append(_case("garbage", ds, _garbage(rng), gt, info))
        else:
            which = rng.randrange(8)
            if which == 0:
                payload, kind = _dump([{"bbox_2d": _box(rng, h, w)}, {"bbox_2d": gt_box}]), "several boxes"
            elif which == 1:
                payload, kind = _dump({"bbox_2d": [gt_box[2], gt_box[3], gt_box[0], gt_box[1]]}), "reversed corners"
            elif which == 2:
                payload, kind = _dump({"bbox_2d": [-50, -50, w * 3, h * 3]}), "huge box outside the frame"
            elif which == 3:
                payload, kind = _dump({"bbox_2d": [gt_box[0], gt_box[1], gt_box[0], gt_box[3]]}), "zero-area box"
            elif which == 4:
                x1, y1, x2, y2 = (int(v) for v in gt_box)
                payload, kind = (
                    f"<|object_ref_start|>it<|object_ref_end|><|box_start|>({x1},{y1}),({x2},{y2})<|box_end|>",
                    "qwen2-vl tuple",
                )
            elif which == 5:
                payload, kind = _dump({"point_2d": gt_box[:2]}), "point instead of box"
            elif which == 6:
                payload, kind = _dump({"bbox_2d": [str(v) for v in gt_box]}), "numeric strings"
            else:
                payload, kind = _dump({"bbox_2d": gt_box}), "options: IoU power 1, think required, gated"
                cfg = {"grounding": {"iou_power": 1.0, "require_think": rng.random() < 0.5, "format_gate": True}}
                out.append(_case("adversarial: " + kind, ds, _wrap(rng, payload), gt, info, cfg))
                continue
            out.append(_case("adversarial: " + kind, ds, _wrap(rng, payload), gt, info))
    return out


def counting_cases(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        h, w = rng.choice(FRAMES)
        info = {"task": "counting", "index": i, "input_size": [h, w]}
        k = rng.choice([0, 1, 2, 3, 5, 8, 12, 20])
        pts = [[_r(rng, 0, w), _r(rng, 0, h)] for _ in range(k)]
        gt = {"points": pts}
        roll = rng.random()
        if roll < 0.55:
            pred = [[round(x + rng.gauss(0, 6), 1), round(y + rng.gauss(0, 6), 1)] for x, y in pts]
            rng.shuffle(pred)
            drop = rng.choice([0, 0, 1, 2, -1, -3])
            if drop > 0:
                pred = pred[drop:]
            elif drop < 0:
                pred += [[_r(rng, 0, w), _r(rng, 0, h)] for _ in range(-drop)]
            key = "bbox_2d" if rng.random() < 0.2 else "point_2d"
            items = [
                {key: ([x - 4, y - 4, x + 4, y + 4] if key == "bbox_2d" else [x, y]), "label": "apple"} for x, y in pred
            ]
            out.append(_case(f"realistic: noisy points ({key})", "pixmo_count", _wrap(rng, _dump(items)), gt, info))
        elif roll < 0.7:
            out.append(_case("garbage", "pixmo_count", _garbage(rng), gt, info))
        else:
            which = rng.randrange(6)
            if which == 0:
                items, kind = (
                    [{"point_2d": [_r(rng, 0, w), _r(rng, 0, h)]} for _ in range(rng.randint(50, 150))],
                    "point spam",
                )
            elif which == 1:
                items, kind = [{"point_2d": p} for p in pts] * 2, "every point twice"
            elif which == 2:
                items, kind = [{"point_2d": [p[0] * 50, p[1] * 50]} for p in pts], "points far outside"
            elif which == 3:
                items, kind = [{"point_2d": p} for p in pts] + [{"point_2d": [1]}], "one malformed item"
            elif which == 4:
                items, kind = [{"point_2d": p} for p in pts], "no input_size (diagonal fallback)"
                info = {"task": "counting", "index": i}
            else:
                items, kind = [{"point_2d": p} for p in pts], "options: think required, f1 radius"
                cfg = {"counting": {"require_think": rng.random() < 0.5, "f1_radius": 0.01}}
                out.append(_case("adversarial: " + kind, "pixmo_count", _wrap(rng, _dump(items)), gt, info, cfg))
                continue
            out.append(_case("adversarial: " + kind, "pixmo_count", _wrap(rng, _dump(items)), gt, info))
    return out


def _page(rng: random.Random) -> str:
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))) for _ in range(rng.randint(0, 8))]
    return "\n".join(lines)


def _perturb(rng: random.Random, text: str, rate: float) -> str:
    chars = list(text)
    out = []
    for c in chars:
        u = rng.random()
        if u < rate / 3:
            continue
        if u < 2 * rate / 3:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz .,"))
            continue
        out.append(c)
        if u < rate:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz"))
    return "".join(out)


def ocr_cases(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        h, w = rng.choice(FRAMES)
        info = {"task": "ocr", "index": i, "input_size": [h, w]}
        text = _page(rng)
        gt = {"text": text}
        roll = rng.random()
        if roll < 0.55:
            pred = _perturb(rng, text, rng.choice([0.0, 0.01, 0.05, 0.2, 0.5]))
            if rng.random() < 0.3:
                pred = pred.replace("\n", "  \n ")
            out.append(
                _case(
                    "realistic: perturbed text", "pageocr", _wrap(rng, pred) if rng.random() < 0.3 else pred, gt, info
                )
            )
        elif roll < 0.7:
            out.append(_case("garbage", "pageocr", _garbage(rng), gt, info))
        else:
            which = rng.randrange(5)
            if which == 0:
                pred, kind = text * 10, "repeated page"
            elif which == 1:
                pred, kind = text.upper(), "upper case"
            elif which == 2:
                pred, kind = "\n".join(reversed(text.split("\n"))), "lines reversed"
            elif which == 3:
                pred, kind = text, "options: raw whitespace, think required"
                cfg = {"ocr": {"normalize_whitespace": False, "require_think": rng.random() < 0.5}}
                out.append(_case("adversarial: " + kind, "pageocr", _wrap(rng, pred.replace(" ", "  ")), gt, info, cfg))
                continue
            else:
                pred, kind = "", "empty answer"
            out.append(_case("adversarial: " + kind, "pageocr", pred, gt, info))
    return out


def detection_cases(rng: random.Random, n: int) -> list[dict]:
    out = []
    for i in range(n):
        h, w = rng.choice(FRAMES)
        info = {"task": "detection", "index": i, "input_size": [h, w]}
        k = rng.choice([0, 1, 1, 2, 3, 4, 6, 9, 15])
        boxes = [_box(rng, h, w) for _ in range(k)]
        labels = [rng.choice(LABELS) for _ in range(k)]
        gt = {"boxes": boxes, "labels": labels}
        roll = rng.random()
        if roll < 0.55:
            items = []
            for b, lab in zip(boxes, labels):
                if rng.random() < 0.15:
                    continue  # missed
                if rng.random() < 0.1:
                    lab = rng.choice(LABELS)  # confused class
                items.append({"bbox_2d": _jitter(rng, b, rng.choice([0.0, 0.03, 0.1, 0.25])), "label": lab})
            for _ in range(rng.choice([0, 0, 1, 2])):
                items.append({"bbox_2d": _box(rng, h, w), "label": rng.choice(LABELS)})  # false positives
            rng.shuffle(items)
            out.append(_case("realistic: noisy detections", "coco", _wrap(rng, _dump(items)), gt, info))
        elif roll < 0.7:
            out.append(_case("garbage", "coco", _garbage(rng), gt, info))
        else:
            which = rng.randrange(10)
            perfect = [{"bbox_2d": b, "label": lab} for b, lab in zip(boxes, labels)]
            cfg = None
            if which == 0:
                items, kind = (
                    [{"bbox_2d": _box(rng, h, w), "label": rng.choice(LABELS)} for _ in range(rng.randint(40, 120))],
                    "box spam",
                )
            elif which == 1:
                items, kind = (
                    [{"bbox_2d": [0, 0, w, h], "label": lab} for lab in sorted(set(labels)) or ["person"]],
                    "giant box per class",
                )
            elif which == 2:
                items, kind = perfect + perfect[:1], "duplicate box"
            elif which == 3:
                items, kind = [dict(it, label=rng.choice(UNKNOWN)) for it in perfect], "unknown labels"
            elif which == 4:
                items, kind = (
                    [{"bbox_2d": [b[2], b[3], b[0], b[1]], "label": lab} for b, lab in zip(boxes, labels)],
                    "reversed corners",
                )
            elif which == 5:
                items, kind = [{"bbox_2d": b} for b in boxes], "missing labels"
            elif which == 6:
                solution = _dump(perfect)[: max(1, len(_dump(perfect)) - rng.randint(5, 40))]
                out.append(_case("adversarial: cut off", "coco", solution, gt, info))
                continue
            elif which == 7:
                items, kind = perfect, "options: think required, weights, cap"
                cfg = {
                    "detection": {
                        "require_think": rng.random() < 0.5,
                        "iou_weight": 2.0,
                        "max_score": 4.0,
                        "max_pred_boxes": 2,
                    }
                }
            elif which == 8:
                items, kind = {"objects": perfect}, "wrapped in an object"
            else:
                items, kind = perfect, "perfect"
            out.append(_case("adversarial: " + kind, "coco", _wrap(rng, _dump(items)), gt, info, cfg))
    return out


GENERATORS = {"grounding": grounding_cases, "counting": counting_cases, "ocr": ocr_cases, "detection": detection_cases}


def generate(seed: int = SEED, n: int = N_PER_TASK) -> dict[str, list[dict]]:
    """``{task: [case, ...]}`` with ``expected`` filled in by the current reward code."""
    from verl_perception.rewards import compute_score

    cases = {}
    for task in TASKS:
        rng = random.Random(f"{seed}:{task}")
        rows = GENERATORS[task](rng, n)
        for idx, row in enumerate(rows):
            row["id"] = f"{task}-{idx:04d}"
            row["expected"] = compute_score(
                row["data_source"],
                row["solution_str"],
                row["ground_truth"],
                row["extra_info"],
                config=row.get("config"),
            )
        cases[task] = [{"id": r.pop("id"), **r} for r in rows]
    return cases


def load(task: str) -> list[dict]:
    with open(HERE / f"{task}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def differences(expected: dict, got: dict, tol: float = TOLERANCE) -> list[str]:
    """Keys whose values differ beyond ``tol`` (or are missing on one side)."""
    out = []
    for key in sorted(set(expected) | set(got)):
        a, b = expected.get(key), got.get(key)
        if a is None or b is None or not math.isclose(a, b, rel_tol=0.0, abs_tol=tol):
            out.append(f"{key}: {a!r} -> {b!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite tests/golden/<task>.jsonl from the current code")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("-n", type=int, default=N_PER_TASK, help="cases per task")
    args = parser.parse_args(argv)
    cases = generate(args.seed, args.n)
    if args.write:
        total = 0
        for task, rows in cases.items():
            path = HERE / f"{task}.jsonl"
            text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
            path.write_text(text, encoding="utf-8")
            total += len(text.encode())
            print(f"wrote {path.relative_to(HERE.parent.parent)}: {len(rows)} cases")
        print(f"total {total / 1024:.0f} KiB")
        return 0
    n_bad = 0
    for task, rows in cases.items():
        stored = load(task)
        if [{k: v for k, v in r.items() if k != "expected"} for r in stored] != [
            {k: v for k, v in r.items() if k != "expected"} for r in rows
        ]:
            print(f"{task}: generated inputs differ from {task}.jsonl (generator changed?)")
            n_bad += 1
        for old, new in zip(stored, rows):
            diff = differences(old["expected"], new["expected"])
            if diff:
                n_bad += 1
                print(f"{old['id']} ({old['kind']}): " + "; ".join(diff))
    print("golden files up to date" if not n_bad else f"{n_bad} difference(s); regenerate on purpose with --write")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
