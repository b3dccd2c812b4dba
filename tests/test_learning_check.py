"""The learning check's verdict on synthetic verl metric logs: pass, fail, unreadable; console and file logs."""

from __future__ import annotations

import json

import pytest

from verl_perception import learning_check as lc

DS = "synthetic_shapes"


def _val(reward, acc, iou=0.3, fmt=1.0):
    return {
        f"val-core/{DS}/reward/mean@1": reward,
        f"val-aux/{DS}/hit50/mean@1": acc,
        f"val-aux/{DS}/iou/mean@1": iou,
        f"val-aux/{DS}/format/mean@1": fmt,
    }


def _write_jsonl(run, records):
    run.mkdir(parents=True, exist_ok=True)
    with open(run / lc.METRICS_FILE, "w") as f:
        for step, data in records:
            f.write(json.dumps({"step": step, "data": data}) + "\n")


def _history(before, after, steps=20):
    recs = [(0, _val(*before))]
    for s in range(1, steps + 1):
        recs.append((s, {lc.TRAIN_REWARD: 1.0 + s / 100, "actor/pg_loss": -0.1, "timing_s/step": 3.0}))
    recs.append((10, _val((before[0] + after[0]) / 2, (before[1] + after[1]) / 2)))
    recs.append((steps, _val(*after)))
    return recs


def test_a_clear_rise_passes_and_writes_plot_and_summary(tmp_path, capsys):
    run = tmp_path / "run"
    _write_jsonl(run, _history(before=(1.10, 0.20), after=(1.30, 0.32)))
    assert lc.main(["--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "LEARNING CHECK PASSED" in out and "(needs >= +0.010)" in out and "(needs >= +0.020)" in out
    assert "reward    1.1000 ->  1.3000   gain +0.2000" in out
    png = run / lc.PLOT_FILE
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    summary = json.loads((run / lc.SUMMARY_FILE).read_text())
    assert summary["passed"] and summary["before"]["step"] == 0 and summary["after"]["step"] == 20
    assert [p["step"] for p in summary["validation_curve"]] == [0, 10, 20]
    assert summary["gains"]["acc@0.5"] == pytest.approx(0.12)


@pytest.mark.parametrize(
    ("before", "after", "why"),
    [
        ((1.10, 0.20), (1.10, 0.20), "reward rose by +0.0000"),  # nothing learnt
        ((1.10, 0.20), (0.90, 0.10), "reward rose by -0.2000"),  # got worse (e.g. a sign error)
        ((1.10, 0.20), (1.30, 0.21), "acc@0.5 rose by +0.0100"),  # reward up, boxes not better
        ((1.10, 0.20), (1.105, 0.40), "reward rose by +0.0050"),  # below the reward margin
    ],
)
def test_no_rise_or_a_rise_below_the_margin_fails(tmp_path, capsys, before, after, why):
    run = tmp_path / "run"
    _write_jsonl(run, _history(before, after))
    assert lc.main(["--run-dir", str(run)]) == 1
    out = capsys.readouterr().out
    assert "LEARNING CHECK FAILED" in out and why in out
    assert not json.loads((run / lc.SUMMARY_FILE).read_text())["passed"]


def test_margins_are_parameters(tmp_path, capsys):
    run = tmp_path / "run"
    _write_jsonl(run, _history(before=(1.10, 0.20), after=(1.30, 0.32)))
    assert lc.main(["--run-dir", str(run), "--min-reward-gain", "0.25"]) == 1
    out = capsys.readouterr().out
    assert "reward rose by +0.2000 < 0.2500" in out
    assert lc.main(["--run-dir", str(run), "--min-reward-gain", "0.1", "--min-acc-gain", "0.1"]) == 0


RAY_CONSOLE = """\
(TaskRunner pid=4242) Creating file logger at /x/metrics.jsonl
(TaskRunner pid=4242) step:0 - val-core/synthetic_shapes/reward/mean@1:np.float64(0.8125) - val-aux/synthetic_shapes/hit50/mean@1:np.float64(0.25) - val-aux/synthetic_shapes/iou/mean@1:0.31 - val-aux/synthetic_shapes/format/mean@1:1.0
(TaskRunner pid=4242) step:1 - critic/score/mean:0.9 - actor/lr:1e-05 - training/epoch:0
Training Progress:  50%|#####     | 1/2 [00:03<00:03]
(TaskRunner pid=4242) \x1b[36mstep:2 - critic/score/mean:np.float32(1.05) - val-core/synthetic_shapes/reward/mean@1:1.0625 - val-aux/synthetic_shapes/hit50/mean@1:0.375\x1b[0m
"""


def test_console_log_with_ray_prefixes_and_numpy_reprs(tmp_path, capsys):
    history = lc.read_console(RAY_CONSOLE.splitlines())
    assert history[0][f"val-core/{DS}/reward/mean@1"] == 0.8125
    assert history[1] == {"critic/score/mean": 0.9, "actor/lr": 1e-05, "training/epoch": 0.0}
    assert history[2]["critic/score/mean"] == pytest.approx(1.05)
    run = tmp_path / "run"
    run.mkdir()
    (run / lc.CONSOLE_FILE).write_text(RAY_CONSOLE)
    assert lc.main(["--run-dir", str(run)]) == 0  # no metrics.jsonl: the console log is read
    assert "acc@0.5   0.2500 ->  0.3750" in capsys.readouterr().out


def test_unreadable_runs_exit_2_with_the_reason(tmp_path, capsys):
    assert lc.main(["--run-dir", str(tmp_path / "missing")]) == 2
    assert "metrics.jsonl (missing)" in capsys.readouterr().err
    run = tmp_path / "only_before"
    _write_jsonl(run, [(0, _val(1.0, 0.2)), (1, {lc.TRAIN_REWARD: 1.0})])
    assert lc.main(["--run-dir", str(run)]) == 2
    assert "found 1" in capsys.readouterr().err
    other = tmp_path / "other_source"
    _write_jsonl(other, [(0, {"val-core/refcoco/reward/mean@1": 1.0}), (5, {"val-core/refcoco/reward/mean@1": 1.5})])
    assert lc.main(["--run-dir", str(other)]) == 2
    assert "val-core/refcoco/reward/mean@1" in capsys.readouterr().err  # says what it did find


def test_a_line_cut_by_a_killed_run_is_skipped():
    lines = [json.dumps({"step": 0, "data": _val(1.0, 0.2)}), '{"step": 3, "data": {"val-co']
    assert lc.read_metrics_jsonl(lines) == {0: _val(1.0, 0.2)}


def test_the_names_read_are_the_ones_verl_logs_for_our_reward(tmp_path):
    """Validation metrics made by verl's own code (RayPPOTrainer._val_metrics_update over the reward
    manager's per-sample infos) for a generated synthetic_shapes split, answered badly then perfectly."""
    import numpy as np
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    from verl_perception.metrics.rows import read_parquet_rows
    from verl_perception.preprocess import synthetic_shapes as ss
    from verl_perception.reward_manager import PerceptionRewardManager
    from verl_perception.rewards import compute_score

    ss.convert(tmp_path, "val", 4, min_pixels=3136, max_pixels=64 * 28 * 28)
    rows = read_parquet_rows(tmp_path / "val.parquet")

    def val_metrics(answer) -> dict:
        infos: dict[str, list] = {"reward": []}
        for r in rows:
            res = compute_score(r["data_source"], answer(r), r["reward_model"]["ground_truth"], r["extra_info"])
            # what the manager hands verl: the fixed key set, None where a key does not apply
            info = PerceptionRewardManager._normalise(None, res, "grounding", strict_keys=True)
            infos["reward"].append(info["score"])
            for k, v in info.items():
                infos.setdefault(k, []).append(v)
        sources = np.array([r["data_source"] for r in rows], dtype=object)
        return RayPPOTrainer._val_metrics_update(None, sources, [str(i) for i in range(len(rows))], infos, [])

    def perfect(r):
        box = json.loads(r["reward_model"]["ground_truth"])["bbox"]
        return json.dumps({"bbox_2d": box, "label": r["extra_info"]["expression"]})

    history = {0: val_metrics(lambda r: '{"bbox_2d": [0, 0, 5, 5], "label": "x"}'), 40: val_metrics(perfect)}
    verdict = lc.judge(history, DS)
    assert verdict.passed
    assert verdict.after["reward"] == pytest.approx(2.0) and verdict.after["acc@0.5"] == 1.0
    assert verdict.before["acc@0.5"] == 0.0 and verdict.before["format"] == 1.0 and verdict.after["iou"] == 1.0


def test_compare_reports_each_run_and_the_spread_of_the_gains(tmp_path, capsys):
    a, b, broken = tmp_path / "seed1", tmp_path / "seed2", tmp_path / "seed3"
    _write_jsonl(a, _history(before=(1.10, 0.20), after=(1.30, 0.32)))
    _write_jsonl(b, _history(before=(1.10, 0.20), after=(1.22, 0.27)))
    result = lc.compare([str(a), str(b)], DS)
    assert [r["gains"]["reward"] for r in result["runs"]] == pytest.approx([0.20, 0.12])
    assert result["spread"]["reward"] == pytest.approx(0.08) and result["spread"]["acc@0.5"] == pytest.approx(0.05)
    assert result["mean_gain"]["acc@0.5"] == pytest.approx(0.095)
    assert lc.main(["--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "1.1000 -> 1.3000 (+0.2000)" in out and "reward mean +0.1600 spread 0.0800" in out
    png = tmp_path / "all" / "curves.png"
    assert lc.main(["--compare", str(a), str(b), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert f"plot: {png}" in capsys.readouterr().out
    broken.mkdir()
    assert lc.main(["--compare", str(a), str(broken)]) == 2  # a run without metrics is named, not skipped
    assert "cannot read" in capsys.readouterr().out
    png.unlink()  # ... and left off the figure, which still shows the readable runs
    assert lc.main(["--compare", str(a), str(broken), "--plot", str(png)]) == 2
    assert png.stat().st_size > 20_000 and "cannot read" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("before", "after", "passes"),
    [
        ((1.1360, 0.1836), (1.1361, 0.1836), False),  # learning rate 0 on an H200: the noise floor
        ((1.1360, 0.1836), (1.1367, 0.1914), False),  # the largest evaluation noise seen (0.0007, 2 rows)
        ((1.1362, 0.1875), (1.1354, 0.1953), False),  # a seed at step 5 that had not moved yet
        ((1.1364, 0.1914), (1.1648, 0.2188), True),  # seed 1 after 10 steps at lr 1e-4
        ((1.1358, 0.1875), (1.1542, 0.2227), True),  # seed 4 after 5 steps
    ],
)
def test_default_margins_separate_the_measured_noise_from_the_measured_learning(tmp_path, capsys, before, after, passes):
    run = tmp_path / "run"
    _write_jsonl(run, _history(before, after))
    assert lc.main(["--run-dir", str(run)]) == (0 if passes else 1)
    assert ("LEARNING CHECK PASSED" in capsys.readouterr().out) is passes


def test_a_malformed_line_before_the_last_is_an_error_not_a_skipped_step(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    lines = ['{"step": 0, "data": {"val-co', json.dumps({"step": 10, "data": _val(1.2, 0.3)})]
    (run / lc.METRICS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(lc.MetricsError, match="metrics.jsonl:1: not a verl file-logger line"):
        lc.read_run(str(run))
    assert lc.main(["--run-dir", str(run)]) == 2
    assert "not a verl file-logger line" in capsys.readouterr().err
