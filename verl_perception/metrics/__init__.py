"""Benchmark metrics, one module per task; answers are read by the rewards' parser.

=============  ==========================  ====================================================
benchmark      module                      headline metric
=============  ==========================  ====================================================
refcoco        :mod:`.grounding`           Acc@0.5 per ``data_source/split`` (refcoco, +, g)
pixmo_count    :mod:`.counting`            exact-count accuracy (+ MAE)
pageocr        :mod:`.ocr`                 edit distance, F1, precision, recall, BLEU, METEOR
coco           :mod:`.detection`           AP, AP50, AP75, APs, APm, APl (pycocotools)
=============  ==========================  ====================================================

Every module's ``evaluate(rows, ...)`` takes :class:`~verl_perception.metrics.rows.EvalRow`
objects and returns ``{"metrics": {...}, "per_row": [...], "notes": [...]}``.
"""

from __future__ import annotations

from verl_perception.tasks import COUNTING, DETECTION, GROUNDING, OCR

# benchmark name (the --task of verl_perception.evaluate) -> task of the contract
BENCHMARK_TASK: dict[str, str] = {
    "refcoco": GROUNDING,
    "pixmo_count": COUNTING,
    "pageocr": OCR,
    "coco": DETECTION,
}
# The metric the benchmark is known by, and whether higher is better.
HEADLINE: dict[str, tuple[str, bool]] = {
    "refcoco": ("acc@0.5", True),
    "pixmo_count": ("accuracy", True),
    "pageocr": ("edit_distance", False),
    "coco": ("AP", True),
}


def task_module(task: str):
    """The metric module of a task name (grounding, counting, ocr, detection)."""
    if task == GROUNDING:
        from verl_perception.metrics import grounding as mod
    elif task == COUNTING:
        from verl_perception.metrics import counting as mod
    elif task == OCR:
        from verl_perception.metrics import ocr as mod
    elif task == DETECTION:
        from verl_perception.metrics import detection as mod
    else:
        raise ValueError(f"unknown task {task!r}")
    return mod
