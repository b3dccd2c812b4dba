"""Public datasets -> verl parquet for the four perception tasks.

One module per dataset family (``coco_detection``, ``refcoco``, ``pixmo_count``, ``pageocr``), each
with ``convert(...)`` and a CLI ``main``; shared pieces: ``rows`` (the parquet schema and row
builder), ``parquet`` (streaming atomic writer), ``runner`` (parallel loop + summary), ``images``
(reading and checking image files), ``prompts`` (every instruction). All coordinate logic is in
:mod:`verl_perception.frame`. ``samples`` converts the bundled raw samples; ``make_samples``
regenerates them.
"""
