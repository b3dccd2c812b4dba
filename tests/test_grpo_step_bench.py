"""The step benchmark's CPU parts: benchmarks/grpo_step.sh's dry run composes a recipe on a real-shape twin and
real-size data, and benchmarks/grpo_step_report.py reads start-up phases and step figures from a stamped log."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import grpo_step_report  # noqa: E402

# Lines in the shapes verl 0.9.1 / vLLM 0.24.0 printed on the H200 run of 2026-12-04 (Ray actor prefixes,
# colour codes, a tqdm bar with carriage returns, a console-logger step line).
LOG = (
    "[    29.7] [verl_perception.preflight] preflight: all checks passed\n"
    "[    58.3] 2026-12-04 19:18:00,000 INFO worker.py:1 -- Started a local Ray instance.\n"
    "[   146.6] \x1b[36m(WorkerDict pid=3456)\x1b[0m Monkey patch Qwen2_5_VLForConditionalGeneration model forward\n"
    "[   172.1] \x1b[36m(TaskRunnerV1 pid=2621)\x1b[0m INFO:2026-12-04 19:19:34,383:actor and ref model engine initialized\n"
    "[   209.4] \x1b[36m(vLLMHttpServer pid=4084)\x1b[0m ['serve',\n"
    "[   334.3] \x1b[36m(vLLMHttpServer pid=4084)\x1b[0m (Worker pid=4502) Capturing CUDA graphs (decode, FULL):   0%|"
    "          | 0/35\rCapturing CUDA graphs (decode, FULL): 100%|##| 35/35\n"
    "[   370.9] \x1b[36m(TaskRunnerV1 pid=2621)\x1b[0m INFO:2026-12-04 19:22:53,293:checkpoint engine manager initialized\n"
    "[   614.1] \x1b[36m(TaskRunnerV1 pid=2621)\x1b[0m step:1 - timing_s/gen:42.4 - timing_s/old_log_prob:27.1 - "
    "timing_s/ref:59.9 - timing_s/update_actor:85.7 - timing_s/step:240.5 - perf/throughput:1243.1 - "
    "perf/mfu/actor:np.float64(0.076) - actor/perf/max_memory_allocated_gb:70.0 - response_length/mean:2048.0\n"
    "[   766.1] \x1b[36m(TaskRunnerV1 pid=2621)\x1b[0m step:2 - timing_s/gen:22.4 - timing_s/step:152.0 - "
    "perf/throughput:1910.0 - perf/mfu/actor:0.087\n"
)


def test_report_reads_phases_and_steps(tmp_path, capsys):
    log = tmp_path / "console.log"
    log.write_bytes(LOG.encode())
    assert grpo_step_report.main([str(log), "--json", str(tmp_path / "r.json")]) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    phases = rep["phases_s"]
    assert phases["preflight"] == 29.7 and phases["ray start"] == 58.3 and phases["actor/ref build (FSDP)"] == 146.6
    assert phases["vLLM server process"] == 209.4 and phases["vLLM CUDA graph capture"] == 334.3
    assert phases["checkpoint engine ready"] == 370.9
    assert rep["startup_s"] == pytest.approx(614.1 - 240.5)
    step1 = rep["steps"]["1"]
    assert step1["timing_s/old_log_prob"] == 27.1 and step1["perf/mfu/actor"] == 0.076
    assert step1["actor/perf/max_memory_allocated_gb"] == 70.0
    assert rep["steps"]["2"]["perf/throughput"] == 1910.0
    out = capsys.readouterr().out
    assert "start-up until step 1 began: 373.6 s" in out and "1910.0" in out and "7.6%" in out


def test_report_without_steps_exits_1(tmp_path, capsys):
    log = tmp_path / "console.log"
    log.write_text(LOG.split("[   614.1]")[0])
    assert grpo_step_report.main([str(log)]) == 1
    assert "no step finished (log ends at 370.9 s)" in capsys.readouterr().out


def test_stamp_prefixes_every_line():
    out = io.StringIO()
    grpo_step_report.stamp(io.StringIO("a\nb\n"), out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(grpo_step_report.STAMP.match(line) for line in lines)


def test_dry_run_composes_coco_detection_on_the_3b_twin(tmp_path):
    env = dict(os.environ, DRY_RUN="1", WORK=str(tmp_path), PYTHON=sys.executable, ROWS="16",
               RECIPE="coco_detection", TWIN="3b", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run(["bash", str(REPO / "benchmarks" / "grpo_step.sh")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "preflight: all checks passed" in run.stderr
    cfg = yaml.safe_load(run.stdout[run.stdout.index("model_engine:"):])
    arr = cfg["actor_rollout_ref"]
    assert arr["model"]["path"] == str(tmp_path / "twin_3b")
    assert arr["model"]["override_config"]["attn_implementation"] in ("flash_varlen_torch", "flash_attention_2")
    assert arr["model"]["use_remove_padding"] is True
    assert cfg["data"]["train_files"] == [str(tmp_path / "data_coco_detection_qwen2_5_vl" / "coco" / "train.parquet")]
    assert cfg["data"]["max_response_length"] == 2048 and arr["rollout"]["n"] == 8
    assert cfg["trainer"]["total_training_steps"] == 2 and cfg["trainer"]["save_freq"] == -1
    assert not list((tmp_path / "twin_3b").glob("*.safetensors"))  # the dry run writes no weights
