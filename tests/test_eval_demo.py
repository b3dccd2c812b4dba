"""verl-perception demo runs end to end on the bundled samples (small: 2 rows per task)."""

from __future__ import annotations

import json

from PIL import Image

from verl_perception import cli
import pytest

from verl_perception.demo import DEMO_TASKS, MAX_REWARD


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--out", str(out), "--limit", "2", "--max-new-tokens", "8", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.md'}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == set(DEMO_TASKS)
    report = (out / "report.md").read_text()
    for task in DEMO_TASKS:
        assert (out / "data" / task / "val.parquet").is_file()
        responses = [json.loads(line) for line in open(out / task / "responses.jsonl")]
        rewards = [json.loads(line) for line in open(out / task / "rewards.jsonl")]
        assert [r["row"] for r in responses] == [0, 1] and [r["row"] for r in rewards] == [0, 1]
        assert all("score" in r and "format" in r for r in rewards)
        metrics = json.loads((out / task / "eval" / "metrics.json").read_text())
        assert metrics["n_rows"] == 2 and metrics["missing_responses"] == 0
        assert metrics["overlays"], task
        with Image.open(metrics["overlays"][0]) as im:
            assert im.format == "PNG"
        assert f"{task}/eval/report.md" in report
        # the summary shows a prediction-vs-truth picture of every task (the reference answers' at least)
        assert f"]({task}/reference/eval/overlays/row" in report
    assert (out / "tiny_model" / "config.json").is_file()

    # The reference answers (ground truth written as answers) get the top reward and perfect
    # metrics after the round trip input frame -> original image.
    headline = {"coco": ("AP", 1.0), "refcoco": ("acc@0.5", 1.0), "pixmo_count": ("accuracy", 1.0),
                "pageocr": ("edit_distance", 0.0)}  # fmt: skip
    for task in DEMO_TASKS:
        ref = summary[task]
        assert ref["reference_reward"] == {"n": 2, "mean_score": MAX_REWARD[task], "format_rate": 1.0}, task
        key, best = headline[task]
        assert ref["reference_metrics"][key] == pytest.approx(best, abs=1e-9), task
        assert "reference answers" in report
