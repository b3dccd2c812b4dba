"""``verl-perception curves`` on files written by verl's own loggers and dump function."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from test_verl_reward_manager import ROWS, _expected
from verl_perception import cli
from verl_perception.training_logs import (
    parse_console_line,
    read_console_log,
    read_metrics_jsonl,
    read_rollout_dumps,
    read_run,
)
from verl_perception.training_metrics import task_metrics

TASKS = ["grounding", "grounding", "counting", "counting", "ocr", "ocr", "detection", "detection", "grounding"]
# rows of the mixed batch seen at each step (a different mix per step, so the curves move)
STEPS = {1: [0, 2, 4, 6, 7], 2: [0, 1, 2, 3, 4, 5, 6, 7, 8], 3: [1, 3, 5, 6, 8]}


def _infos(rows):
    return [{**_expected(i), "task": TASKS[i], "reason": ""} for i in rows]


def _step_metrics(step: int) -> dict:
    rows = STEPS[step]
    metrics = task_metrics([ROWS[i][0] for i in rows], _infos(rows))
    metrics["critic/score/mean"] = sum(_expected(i)["score"] for i in rows) / len(rows)
    metrics["training/global_step"] = step
    return metrics


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A run logged by verl's ``Tracking`` with the console and file backends, as ``fit`` logs it."""
    import contextlib
    import io
    import os

    from verl.utils.tracking import Tracking

    tmp = tmp_path_factory.mktemp("run")
    jsonl = tmp / "metrics.jsonl"
    os.environ["VERL_FILE_LOGGER_PATH"] = str(jsonl)
    console = io.StringIO()
    try:
        with contextlib.redirect_stdout(console):
            tracking = Tracking(project_name="p", experiment_name="e", default_backend=["console", "file"])
            for step in STEPS:
                tracking.log(data=_step_metrics(step), step=step)
            tracking.finish()
    finally:
        del os.environ["VERL_FILE_LOGGER_PATH"]
    log = tmp / "train.log"
    # what a saved stdout of main_ppo looks like: Ray's actor prefix, colour codes, other lines
    lines = [f"\x1b[36m(TaskRunnerV1 pid=4242)\x1b[0m {line}" for line in console.getvalue().splitlines()]
    log.write_text("Training Progress:  33%|###\n" + "\n".join(lines) + "\nFinal validation metrics: None\n")
    return tmp, jsonl, log


def test_file_logger_and_console_log_give_the_logged_values(logged):
    _, jsonl, log = logged
    from_file, from_console = read_metrics_jsonl(jsonl), read_console_log(log)
    for step in STEPS:
        for key, value in _step_metrics(step).items():
            assert dict(from_file[key])[step] == pytest.approx(value, rel=1e-12), key
            assert dict(from_console[key])[step] == pytest.approx(value, rel=1e-12), key
    # a data source present in steps 1 and 2 only has no point at step 3
    assert [s for s, _ in from_file["perception/refcoco+/score"]] == [2, 3]
    assert [s for s, _ in from_file["perception/refcoco/iou"]] == [1, 2]


def test_curves_command_writes_plots_csv_and_summary(logged, capsys):
    tmp, jsonl, _ = logged
    out = tmp / "curves"
    assert cli.main(["curves", str(jsonl), "--out", str(out)]) == 0
    assert f"curves: {out / 'curves.md'}" in capsys.readouterr().out
    for name in ("overview", "perception_coco", "perception_refcoco", "perception_pixmo_count", "perception_pageocr"):
        with Image.open(out / f"{name}.png") as im:
            assert im.format == "PNG" and im.width >= 800
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert float(rows[2]["perception/coco/f1"]) == pytest.approx(_step_metrics(3)["perception/coco/f1"])
    assert rows[2]["perception/refcoco/iou"] == ""  # not logged at step 3
    summary = (out / "curves.md").read_text()
    assert "| perception/coco/f1 |" in summary and "![perception_coco.png](perception_coco.png)" in summary


def test_unreadable_input_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty.log").write_text("no metrics here\n")
    assert cli.main(["curves", str(tmp_path / "empty.log"), "--out", str(tmp_path / "o")]) == 2
    assert "no metrics found" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"not": "verl"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: not a verl file-logger line"):
        read_run(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("trainer", ["v1", "legacy"])
def test_rollout_dumps_written_by_verl(tmp_path, trainer):
    """verl's ``_write_generations`` (the same in both trainers): the V1 trainer dumps only ``uid``
    beside score and ground truth; the legacy trainer also dumps the reward manager's extra info."""
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer

    for step, rows in STEPS.items():
        infos = _infos(rows)
        if trainer == "v1":
            extra = {"uid": [f"u{i}_0_0" for i in rows]}
        else:
            keys = sorted({k for info in infos for k in info})
            extra = {k: [info.get(k) for info in infos] for k in keys}
        RayPPOTrainer._write_generations(
            inputs=[f"prompt {i}" for i in rows],
            outputs=[ROWS[i][1] for i in rows],
            gts=[json.dumps(ROWS[i][2]) for i in rows],
            scores=[_expected(i)["score"] for i in rows],
            reward_extra_infos_dict=extra,
            dump_path=str(tmp_path),
            global_steps=step,
        )
    series = read_rollout_dumps(tmp_path)
    for step, rows in STEPS.items():
        det = [i for i in rows if TASKS[i] == "detection"]
        mean = sum(_expected(i)["score"] for i in det) / len(det)
        assert dict(series["rollouts/detection/score"])[step] == pytest.approx(mean)
        everything = sum(_expected(i)["score"] for i in rows) / len(rows)
        assert dict(series["rollouts/all/score"])[step] == pytest.approx(everything)
    if trainer == "v1":  # no extra info: the score per task only
        assert not any(k.endswith(("/f1", "/format", "/unscored")) for k in series)
    else:
        ocr = [i for i in STEPS[2] if TASKS[i] == "ocr"]
        assert dict(series["rollouts/ocr/edit_sim"])[2] == pytest.approx(
            sum(_expected(i)["edit_sim"] for i in ocr) / len(ocr)
        )
        assert "rollouts/detection/f1" in series and "rollouts/grounding/hit50" in series


def test_file_logger_lines_cut_last_line_skipped_broken_middle_line_raises(tmp_path):
    good = json.dumps({"step": 1, "data": {"critic/score/mean": 0.5, "val-core/x/reward/mean@1": float("nan")}})
    (tmp_path / "killed.jsonl").write_text(good + '\n{"step": 2, "data": {"critic/sc')
    assert read_metrics_jsonl(tmp_path / "killed.jsonl") == {"critic/score/mean": [(1, 0.5)]}  # NaN dropped
    (tmp_path / "broken.jsonl").write_text('{"step": 1, "da\n' + good + "\n")
    with pytest.raises(ValueError, match="broken.jsonl:1: not a verl file-logger line"):
        read_metrics_jsonl(tmp_path / "broken.jsonl")


def test_console_step_is_the_line_s_own_not_a_key_ending_in_step():
    assert parse_console_line("(TaskRunnerV1 pid=7) step:3 - training/global_step:3 - a:np.float64(1e-3)") == (
        3,
        {"training/global_step": 3.0, "a": 0.001},
    )
    assert parse_console_line("perf/global_step:5 - x:1") is None
    assert parse_console_line("Training Progress: 3/10") is None
