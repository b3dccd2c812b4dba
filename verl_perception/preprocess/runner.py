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
import signal
import sys
import threading
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


class InputError(ValueError):
    """A mistake the user can fix (the message names the file and the fix): an unreadable,
    truncated or wrong-format input, an unwritable output, or a run that would publish nothing
    (or lose most records to one reason). The CLIs print it as one ``error:`` line, exit 2."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised in the main process like Ctrl-C so that the same cleanup runs."""


# Skip reasons that are the run's own choice, not lost data (train drops unannotated images).
DELIBERATE_SKIPS = frozenset({"no_annotations"})
N_OFFENDERS = 5  # offending records named per reason in a refusal


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str = "input file"):
    """Re-raise what reading ``path`` raises as one :class:`InputError` naming the file."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {what}") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied; make the {what} readable") from None
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001  (json, ijson, pickle, pyarrow, unicode: all mean a bad file)
        detail = str(e).splitlines()[0][:200] if str(e) else ""
        raise InputError(
            f"{path}: cannot read this {what} ({type(e).__name__}: {detail}); it is truncated or not in the "
            "expected format: re-download or re-extract it"
        ) from None


def check_output(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output that cannot be written (:class:`InputError`)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise InputError(f"{path}: the output path is a directory; remove it or choose another --output-dir")
    parent = os.path.dirname(path)
    probe = parent
    while not os.path.exists(probe):  # the nearest existing ancestor must be a writable directory
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise InputError(f"{probe}: is a file, not a directory; choose another --output-dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{probe}: the output directory is not writable; choose another --output-dir")


def _worker_init() -> None:
    # Ctrl-C or a job scheduler's SIGTERM reaches the whole process group: only the main process
    # handles them, and stops the pool. A worker killed by the signal would lose its task (the
    # main process then waits for it forever) or die holding the task queue's lock (which
    # pool.terminate() then waits for forever). Stopped by the pool, a worker exits on its own
    # after at most the task in hand.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stop_pool(pool, drained: bool) -> None:
    """Stop the workers: the pool's own way when they are idle; else kill them.

    ``pool.terminate()`` cannot stop workers that are busy: one blocked writing a row nobody reads
    any more, or killed while holding the task queue's lock, makes it wait forever (the hang of
    an interrupted run). So after an interrupt or an error the worker handler is stopped first (no
    respawns), the workers are killed, and the pool's own teardown, which would wait for them, is
    cancelled (its threads are daemons and die with the process).
    """
    if drained:
        pool.terminate()
        pool.join()
        return
    from multiprocessing.pool import TERMINATE

    handler = pool._worker_handler
    handler._state = TERMINATE
    pool._change_notifier.put(None)
    handler.join(timeout=5)
    for proc in list(pool._pool):
        proc.kill()
    for proc in list(pool._pool):
        proc.join(timeout=5)
    pool._terminate.cancel()


def _raise_interrupted(signum, frame):
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class Summary:
    """What a run did: rows written, rows skipped and items dropped from kept rows, by reason."""

    path: str
    rows_written: int = 0
    skipped: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # first detail seen per reason
    offenders: dict[str, list[str]] = field(default_factory=dict)  # first N_OFFENDERS details per reason
    seconds: float = 0.0

    def refusal(self, source: str | None) -> str | None:
        """Why this run must not publish its output (no rows, or most records lost to one
        reason), or None."""
        records = self.rows_written + sum(self.skipped.values())
        lost = [(n, r) for r, n in self.skipped.items() if r not in DELIBERATE_SKIPS]
        n, reason = max(lost, default=(0, ""))
        where = f" from {source}" if source else ""
        if self.rows_written == 0 and not records:
            return f"no records{where}: the input is empty (or --limit 0)"
        if self.rows_written == 0 or 2 * n > records:
            if not n:  # only deliberate skips
                why = ", ".join(f"{r}: {k}" for r, k in sorted(self.skipped.items()))
                return f"0 of {records} records{where} became rows ({why})"
            first = "; ".join(self.offenders.get(reason, []))
            return f"{n} of {records} records{where} skipped as {reason} (first: {first})"
        return None

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
    allow_empty: bool = False,
    source: str | os.PathLike | None = None,
) -> Summary:
    """Build rows from ``records`` with ``workers`` processes and stream them to ``out_path``.

    Rows keep the order of ``records``; ``extra_info["index"]`` is the row's position in the file.
    ``build`` must be picklable (a ``functools.partial`` of a module-level function) when
    ``workers > 1``. With ``strict``, the first skipped record or dropped item raises
    :class:`PreprocessError` and no file is published.

    Never replaces good output with nothing: a run that would write no rows, or lose more than
    half of its records to one skip reason (``image not found`` after a wrong ``--image-dir``),
    raises :class:`InputError` naming the reason and the first offending records (``source``, the
    input file, is named too) and publishes nothing, so an existing ``out_path`` stays as it was;
    ``allow_empty`` publishes anyway. SIGINT and SIGTERM stop the workers and the main process
    and remove the temporary file (:class:`KeyboardInterrupt` / :class:`Interrupted` propagate).
    """
    import qwen_vl_utils  # noqa: F401  (imported once here, shared by the forked workers)

    check_output(out_path)
    summary = Summary(path=str(out_path))
    t0 = time.perf_counter()
    call = partial(_call, build)
    window = max(1, workers) * 64  # bounds the rows in flight (each holds an image)
    pool = None
    drained = False  # every result read: the workers are idle
    bar = tqdm(total=total, desc=desc, unit="rec", disable=not progress, file=sys.stderr, mininterval=1.0)
    try:
        with _sigterm_as_interrupt(), AtomicParquetWriter(out_path, row_group_rows=row_group_rows) as writer:
            if workers > 1:
                pool = mp.get_context("fork").Pool(workers, initializer=_worker_init)
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
                        offenders = summary.offenders.setdefault(a, [])
                        if len(offenders) < N_OFFENDERS:
                            offenders.append(str(b or key)[:200])
            if pool:
                pool.close()
                drained = True
            summary.rows_written = writer.rows_added
            refusal = None if allow_empty else summary.refusal(None if source is None else str(source))
            if refusal:
                kept = f"the existing {out_path} is kept" if os.path.exists(out_path) else "nothing was written"
                raise InputError(f"{refusal}; {kept}. Fix the input (paths such as --image-dir) "
                                 "or pass --allow-empty to write the file anyway")
        summary.rows_written = writer.rows_written
    finally:
        bar.close()
        if pool:
            _stop_pool(pool, drained)
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
    parser.add_argument("--allow-empty", action="store_true",
                        help="write the output even when it has no rows or most records were skipped for one "
                             "reason (by default such a run exits 2 and keeps any existing file)")


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
    """Turn the errors a user can fix into one ``error:`` line instead of a traceback: a missing,
    unreadable or malformed input or an unwritable output exits 2; a ``--strict`` stop exits 1 (as
    it always has); an interrupt exits 130 (SIGINT) or 143 (SIGTERM), its temporary file removed."""
    try:
        yield
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Interrupted:
        print("error: terminated (SIGTERM); no output was published", file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print("error: interrupted (SIGINT); no output was published", file=sys.stderr)
        sys.exit(130)
    except PreprocessError as e:
        sys.exit(f"error: {type(e).__name__}: {e}")
    except OSError as e:
        name = e.filename or ""
        print(f"error: {name}: {e.strerror or e}; check the path and its permissions", file=sys.stderr)
        sys.exit(2)
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)


def finish(summary: Summary) -> Summary:
    print(summary.format(), file=sys.stderr)
    return summary
