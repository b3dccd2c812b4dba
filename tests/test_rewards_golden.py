"""Golden regression: every recorded completion must score exactly as recorded (1e-9).

A failure means a reward changed. If the change is intended, regenerate on purpose and review
the diff of tests/golden/*.jsonl:  python tests/golden/generate.py --write
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from verl_perception.rewards import TASK_KEYS, compute_score

GOLDEN = Path(__file__).resolve().parent / "golden"
_spec = importlib.util.spec_from_file_location("golden_generate", GOLDEN / "generate.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.mark.parametrize("task", gen.TASKS)
def test_recorded_scores_are_reproduced(task):
    rows = gen.load(task)
    assert len(rows) >= 200
    kinds = {r["kind"].split(":")[0] for r in rows}
    assert kinds == {"realistic", "garbage", "adversarial"}
    failures = []
    for row in rows:
        got = compute_score(
            row["data_source"], row["solution_str"], row["ground_truth"], row["extra_info"], config=row.get("config")
        )
        assert set(got) == {"score", "format", *TASK_KEYS[task]}
        diff = gen.differences(row["expected"], got)
        if diff:
            failures.append(f"{row['id']} ({row['kind']}): " + "; ".join(diff))
    assert not failures, (
        f"{len(failures)} golden case(s) changed; if intended run `python tests/golden/generate.py --write`:\n"
        + "\n".join(failures[:20])
    )


def test_generator_reproduces_the_stored_inputs():
    # The files must be what the documented command writes (no hand edits, no stale generator).
    generated = gen.generate()
    for task in gen.TASKS:
        stored = gen.load(task)
        strip = lambda rows: [{k: v for k, v in r.items() if k != "expected"} for r in rows]  # noqa: E731
        assert strip(stored) == strip(generated[task]), f"{task}.jsonl is not what generate.py produces"


def test_golden_files_stay_small():
    assert sum(p.stat().st_size for p in GOLDEN.glob("*.jsonl")) < 1_000_000


def test_golden_check_detects_a_change():
    row = gen.load("detection")[0]
    changed = dict(row["expected"], score=row["expected"]["score"] + 1e-6)
    assert gen.differences(row["expected"], changed) and not gen.differences(row["expected"], dict(row["expected"]))
