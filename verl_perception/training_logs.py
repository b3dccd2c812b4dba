"""Read a verl run's metrics back from its files, without wandb.

Three sources, as verl 0.9.1 writes them:

- the ``file`` logger backend (``trainer.logger=[console,file]``): one JSON object per step,
  ``{"step": N, "data": {metric: value}}`` (``VERL_FILE_LOGGER_PATH``, or
  ``$VERL_FILE_LOGGER_ROOT/<project>/<experiment>.jsonl``);
- the ``console`` backend's lines, ``step:N - metric:value - ...``, from a saved stdout (Ray's
  ``(TaskRunnerV1 pid=...)`` prefixes and colour codes are ignored);
- the rollout dumps of ``trainer.rollout_data_dir``: ``<step>.jsonl``, one line per rollout with
  ``score``, ``gts`` (the ground truth) and ``step``; the legacy trainer also writes the reward
  manager's extra info (``task``, ``format``, ``iou``...), the default V1 trainer does not. Dumps give
  ``rollouts/<task>/score`` (task from the ground truth's fields) and, where present, the components.

Every reader returns ``{metric: [(step, value), ...]}`` sorted by step.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from verl_perception.tasks import COUNTING, DETECTION, GROUNDING, OCR
from verl_perception.training_metrics import task_metrics

__all__ = ["Series", "read_metrics_jsonl", "read_console_log", "read_rollout_dumps", "read_run", "merge"]

Series = dict[str, list[tuple[int, float]]]

# verl's console line; a number may be printed as numpy's repr (np.float64(0.5)) or torch's
_CONSOLE = re.compile(r"step:(\d+) - (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NUMBER = re.compile(r"^(?:[A-Za-z_][\w.]*\()?\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+|nan|inf))\s*\)?$")

# the ground-truth field that identifies each task (verl_perception.rewards.inputs reads them)
_GT_FIELD = {"bbox": GROUNDING, "points": COUNTING, "text": OCR, "boxes": DETECTION}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    match = _NUMBER.match(str(value).strip())
    if not match:
        return None
    number = float(match.group(1))
    return number if math.isfinite(number) else None


def _add(series: Series, step: int, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        number = _number(value)
        if number is not None:
            series[key].append((step, number))


def _sorted(series: Series) -> Series:
    # a step logged twice (a resumed run) keeps its last value
    return {k: sorted(dict(v).items()) for k, v in sorted(series.items())}


def read_metrics_jsonl(path: str | os.PathLike) -> Series:
    """verl's ``file`` logger output (``{"step": N, "data": {...}}`` per line)."""
    series: Series = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                step, data = int(record["step"]), record["data"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{os.fspath(path)}:{n}: not a verl file-logger line ({e})") from e
            _add(series, step, data)
    return _sorted(series)


def read_console_log(path: str | os.PathLike) -> Series:
    """verl's ``console`` logger lines (``step:N - key:value - ...``) in a saved log; other lines are skipped."""
    series: Series = defaultdict(list)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            match = _CONSOLE.search(_ANSI.sub("", line.rstrip("\n")))
            if not match:
                continue
            data = {}
            for item in match.group(2).split(" - "):
                key, sep, value = item.rpartition(":")
                if sep and key:
                    data[key.strip()] = value
            _add(series, int(match.group(1)), data)
    return _sorted(series)


def _task_of(gts: Any) -> str:
    try:
        gt = json.loads(gts) if isinstance(gts, str) else gts
    except ValueError:
        return "unknown"
    if isinstance(gt, Mapping):
        for field, task in _GT_FIELD.items():
            if field in gt:
                return task
    return "unknown"


def read_rollout_dumps(directory: str | os.PathLike) -> Series:
    """``trainer.rollout_data_dir``: per step, ``rollouts/<task>/score`` (and the components the
    legacy trainer's dumps carry) plus ``rollouts/all/score``."""
    files = [f for f in os.listdir(directory) if re.fullmatch(r"\d+\.jsonl", f)]
    if not files:
        raise ValueError(f"{os.fspath(directory)} has no <step>.jsonl rollout dumps")
    series: Series = defaultdict(list)
    for name in files:
        step = int(name.split(".")[0])
        tasks, infos = [], []
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    task = row.get("task") or _task_of(row.get("gts"))
                    tasks.append(task)
                    infos.append({**row, "task": task})
        if not infos:
            continue
        metrics = task_metrics(tasks, infos, prefix="rollouts")
        scores = [s for s in (_number(i.get("score")) for i in infos) if s is not None]
        if scores:
            metrics["rollouts/all/score"] = sum(scores) / len(scores)
        _add(series, step, metrics)
    return _sorted(series)


def read_run(path: str | os.PathLike) -> Series:
    """Any of the three sources: a directory is read as rollout dumps, a ``.jsonl`` file as the
    file logger's output, anything else as a console log."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_rollout_dumps(path)
    if path.endswith(".jsonl"):
        return read_metrics_jsonl(path)
    return read_console_log(path)


def merge(parts: Iterable[Series]) -> Series:
    """One series per metric from several sources (later sources win on the same step)."""
    out: Series = defaultdict(list)
    for part in parts:
        for key, points in part.items():
            out[key].extend(points)
    return _sorted(out)
