"""Which reward and metric a row gets: the data_source -> task table of the contract.

A row's task comes from ``extra_info["task"]`` when present (so users can bring their own
datasets under any name), else from its ``data_source``. Anything else is an error that names
the data_source: a silent zero reward would train a model on nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GROUNDING = "grounding"
COUNTING = "counting"
OCR = "ocr"
DETECTION = "detection"

TASKS: tuple[str, ...] = (GROUNDING, COUNTING, OCR, DETECTION)
_TASK_SET = frozenset(TASKS)

DATA_SOURCE_TO_TASK: dict[str, str] = {
    "refcoco": GROUNDING,
    "refcoco+": GROUNDING,
    "refcocog": GROUNDING,
    "pixmo_count": COUNTING,
    "pageocr": OCR,
    "coco": DETECTION,
}


class UnknownTaskError(ValueError):
    """Raised when a row's task cannot be determined; the message names the data_source."""


def resolve_task(data_source: Any, extra_info: Mapping[str, Any] | None = None) -> str:
    """Return the task name for a row.

    ``extra_info["task"]`` wins over the data_source lookup. Raises :class:`UnknownTaskError`
    naming the data_source when neither gives one of :data:`TASKS`.
    """
    task = None
    if type(extra_info) is dict or isinstance(extra_info, Mapping):
        task = extra_info.get("task")
        if type(task) is str and task in _TASK_SET:  # already canonical (the usual case)
            return task
    if task is not None:
        task = str(task).strip().lower()
        if task in TASKS:
            return task
        raise UnknownTaskError(
            f"extra_info['task']={task!r} for data_source={data_source!r} is not one of {list(TASKS)}"
        )
    key = str(data_source).strip().lower() if data_source is not None else None
    if key in DATA_SOURCE_TO_TASK:
        return DATA_SOURCE_TO_TASK[key]
    raise UnknownTaskError(
        f"data_source={data_source!r} has no perception task: known data_source values are "
        f"{sorted(DATA_SOURCE_TO_TASK)}; for another dataset set extra_info['task'] to one of {list(TASKS)}"
    )
