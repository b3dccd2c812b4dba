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

Every reader returns ``{metric: [(step, value), ...]}`` sorted by step; :func:`metrics_jsonl_records`,
:func:`console_records` and :func:`parse_console_line` give the ``(step, {metric: value})`` records under
them (``verl_perception.learning_check`` reads runs through these). Values that are not finite numbers are
dropped.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from verl_perception.tasks import COUNTING, DETECTION, GROUNDING, OCR
from verl_perception.training_metrics import task_metrics

__all__ = [
    "Series",
    "Record",
    "metrics_jsonl_records",
    "console_records",
    "parse_console_line",
    "read_metrics_jsonl",
    "read_console_log",
    "read_rollout_dumps",
    "read_run",
    "merge",
]

Series = dict[str, list[tuple[int, float]]]
Record = tuple[int, dict[str, float]]  # (step, {metric: value}): one logged step

# verl's console line (after a Ray prefix such as "(TaskRunnerV1 pid=1)"; not a key ending in "step");
# a number may be printed as numpy's repr (np.float64(0.5)) or torch's
_CONSOLE = re.compile(r"(?:^|\s|\))step:(\d+) - (.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_NUMBER = re.compile(
    r"^(?:[A-Za-z_][\w.]*\()?\s*([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf))\s*\)?$"
)

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


def _numbers(data: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in data.items():
        number = _number(value)
        if number is not None:
            out[str(key).strip()] = number
    return out


def _add(series: Series, step: int, data: Mapping[str, Any]) -> None:
    for key, value in _numbers(data).items():
        series[key].append((step, value))


def _series(records: Iterable[Record]) -> Series:
    series: Series = defaultdict(list)
    for step, data in records:  # already finite numbers (the record readers keep no others)
        for key, value in data.items():
            series[key].append((step, value))
    return _sorted(series)


def _sorted(series: Series) -> Series:
    # a step logged twice (a resumed run) keeps its last value
    return {k: sorted(dict(v).items()) for k, v in sorted(series.items())}


def metrics_jsonl_records(lines: Iterable[str], name: str = "<lines>") -> Iterator[Record]:
    """verl's ``file`` logger lines (``{"step": N, "data": {...}}``) -> ``(step, {metric: value})``.

    A last line that is not JSON is skipped: a run killed while writing cuts it. Any other line that is not
    such a record raises ``ValueError("<name>:<line>: not a verl file-logger line (...)")``.
    """
    cut = None  # (line number, error) of an undecodable line, fatal unless it is the last
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if cut is not None:
            raise ValueError(f"{name}:{cut[0]}: not a verl file-logger line ({cut[1]})")
        try:
            record = json.loads(line)
        except ValueError as e:
            cut = (n, e)
            continue
        try:
            step, data = int(record["step"]), record["data"]
            if not isinstance(data, Mapping):
                raise TypeError(f"data is {type(data).__name__}, not an object")
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{name}:{n}: not a verl file-logger line ({e!r})") from e
        yield step, _numbers(data)


def parse_console_line(line: str) -> Record | None:
    """One line of verl's ``console`` logger (``step:N - key:value - ...``, with Ray's actor prefix and colour
    codes allowed) -> ``(step, {key: value})``, or None for any other line. verl prints each value with
    ``pprint.pformat``, so numpy scalars read ``np.float64(0.25)``; values that are not numbers are skipped."""
    match = _CONSOLE.search(_ANSI.sub("", line.rstrip("\n")))
    if not match:
        return None
    data = {}
    for item in match.group(2).split(" - "):
        key, sep, value = item.rpartition(":")
        if sep and key:
            data[key] = value
    return int(match.group(1)), _numbers(data)


def console_records(lines: Iterable[str]) -> Iterator[Record]:
    """The console logger's records among the lines of a saved log (other lines skipped)."""
    for line in lines:
        record = parse_console_line(line)
        if record is not None:
            yield record


def read_metrics_jsonl(path: str | os.PathLike) -> Series:
    """verl's ``file`` logger output (``{"step": N, "data": {...}}`` per line)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return _series(metrics_jsonl_records(f, os.fspath(path)))


def read_console_log(path: str | os.PathLike) -> Series:
    """verl's ``console`` logger lines (``step:N - key:value - ...``) in a saved log; other lines are skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return _series(console_records(f))


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
