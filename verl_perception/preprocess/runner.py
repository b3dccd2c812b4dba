"""The shared preprocessing loop: raw records -> rows (in parallel) -> one streamed parquet file.

Each dataset module supplies an iterator of small, picklable raw records and a top-level
``build(ctx, record) -> (row, dropped)`` function that reads the image and converts the ground
truth, raising :class:`~verl_perception.preprocess.rows.Skip` with a named reason for records that
cannot become rows. ``dropped`` counts items (e.g. boxes) left out of a kept row, by reason.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tqdm import tqdm

from verl_perception.frame import FAMILIES, check_pixel_bounds, get_family
from verl_perception.preprocess.parquet import ROW_GROUP_ROWS, AtomicParquetWriter
from verl_perception.preprocess.rows import Skip


class PreprocessError(RuntimeError):
    """A ``--strict`` run met a bad record (the message names the record and the reason)."""


@dataclass
class Summary:
    """What a run did: rows written, rows skipped and items dropped from kept rows, by reason."""

    path: str
    rows_written: int = 0
    skipped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # first detail seen per reason
    seconds: float = 0.0

    def format(self) -> str:
        lines = [f"wrote {self.rows_written} rows to {self.path} in {self.seconds:.1f}s"]
        total = sum(self.skipped.values())
        lines.append(f"skipped {total} records" + (":" if total else ""))
        for reason, n in sorted(self.skipped.items()):
            lines.append(f"  {reason}: {n}  (e.g. {self.examples.get(reason, '')[:160]})")
        if self.dropped:
            lines.append(f"dropped {sum(self.dropped.values())} items from kept rows:")
            for reason, n in sorted(self.dropped.items()):
                lines.append(f"  {reason}: {n}")
        return "\n".join(lines)


BuildFn = Callable[[Any, dict], "tuple[dict, dict[str, int]]"]


def _call(build: Callable, record: dict):
    try:
        row, dropped = build(record)
        return "ok", row, dropped, None
    except Skip as s:
        return "skip", s.reason, s.detail, record.get("key")
    except Exception as e:  # noqa: BLE001  (a bug or an unforeseen input: count it, never die halfway)
        return "skip", "unexpected_error", f"{type(e).__name__}: {e}", record.get("key")


def run(
    records: Iterable[dict],
    build: Callable[[dict], tuple[dict, dict[str, int]]],
    out_path: str | os.PathLike,
    *,
    total: int | None = None,
    workers: int = 1,
    strict: bool = False,
    desc: str = "rows",
    row_group_rows: int = ROW_GROUP_ROWS,
    progress: bool = True,
) -> Summary:
    """Build rows from ``records`` with ``workers`` processes and stream them to ``out_path``.

    Rows keep the order of ``records``; ``extra_info["index"]`` is the row's position in the file.
    ``build`` must be picklable (a ``functools.partial`` of a module-level function) when
    ``workers > 1``. With ``strict``, the first skipped record or dropped item raises
    :class:`PreprocessError` and no file is published.
    """
    import qwen_vl_utils  # noqa: F401  (imported once here, shared by the forked workers)

    summary = Summary(path=str(out_path))
    t0 = time.perf_counter()
    call = partial(_call, build)
    window = max(1, workers) * 64  # bounds the rows in flight (each holds an image)
    pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
    bar = tqdm(total=total, desc=desc, unit="rec", disable=not progress, file=sys.stderr, mininterval=1.0)
    try:
        with AtomicParquetWriter(out_path, row_group_rows=row_group_rows) as writer:
            it = iter(records)
            while True:
                batch = list(itertools.islice(it, window))
                if not batch:
                    break
                results = pool.imap(call, batch, chunksize=4) if pool else map(call, batch)
                for status, a, b, key in results:
                    bar.update(1)
                    if status == "ok":
                        row, dropped = a, b
                        if dropped:
                            if strict:
                                raise PreprocessError(f"--strict: record {row['extra_info'].get('file_name')}: "
                                                      f"dropped items {dict(dropped)}")
                            summary.dropped.update(dropped)
                        row["extra_info"]["index"] = writer.rows_added
                        writer.add(row)
                    else:
                        if strict:
                            raise PreprocessError(f"--strict: record {key!r} skipped: {a}: {b}")
                        summary.skipped[a] += 1
                        summary.examples.setdefault(a, f"{key}: {b}")
            if pool:
                pool.close()
        summary.rows_written = writer.rows_written
    finally:
        bar.close()
        if pool:
            pool.terminate()
            pool.join()
    summary.seconds = time.perf_counter() - t0
    return summary


def add_common_args(parser: argparse.ArgumentParser, splits: Iterable[str]) -> None:
    """The options every preprocessing CLI shares."""
    parser.add_argument("--output-dir", required=True, help="directory for <split>.parquet")
    parser.add_argument("--split", required=True, choices=list(splits), help="which split to write")
    parser.add_argument("--model-family", default=get_family().name, choices=list(FAMILIES),
                        help="the model family the rows are for: its resize factor and coordinate convention "
                             f"(default {get_family().name}); recorded in extra_info.model_family")
    bounds = ", ".join(f"{f.name} {f.min_pixels}/{f.max_pixels}" for f in FAMILIES.values())
    parser.add_argument("--min-pixels", type=int, default=None,
                        help=f"smart_resize lower pixel bound of the input frame (default per family: {bounds})")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="smart_resize upper pixel bound of the input frame (default per family, as above)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                        help="processes decoding images in parallel (default: cores - 1)")
    parser.add_argument("--strict", action="store_true",
                        help="fail on the first bad record instead of skipping it (nothing is written)")
    parser.add_argument("--limit", type=int, default=None, help="stop after this many raw records (quick looks)")
    parser.add_argument("--row-group-size", type=int, default=ROW_GROUP_ROWS, help="rows per parquet row group")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_common_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validate the shared options; fills in the family's default pixel bounds."""
    family = get_family(args.model_family)
    if args.min_pixels is None:
        args.min_pixels = family.min_pixels
    if args.max_pixels is None:
        args.max_pixels = family.max_pixels
    try:
        check_pixel_bounds(args.min_pixels, args.max_pixels, family)
    except ValueError as e:
        parser.error(str(e))
    if args.workers < 1:
        parser.error("--workers must be >= 1")


def limited(records: Iterable[dict], limit: int | None) -> Iterable[dict]:
    return records if limit is None else itertools.islice(records, limit)


@contextlib.contextmanager
def cli_errors():
    """Turn the errors a user can fix (bad --strict record, missing or malformed input file) into a
    one-line message and exit status 1 instead of a traceback."""
    try:
        yield
    except (PreprocessError, FileNotFoundError, IsADirectoryError, json.JSONDecodeError, ValueError, TypeError) as e:
        sys.exit(f"error: {type(e).__name__}: {e}")


def finish(summary: Summary) -> Summary:
    print(summary.format(), file=sys.stderr)
    return summary
