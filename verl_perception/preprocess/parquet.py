"""Streaming, atomic parquet output: rows are written in row groups to a temporary file that is
renamed over the target only when the run completes, so a killed run never leaves a half-written
parquet where verl would read it.

Temporary files are ``.<name>.<8 random characters>.tmp`` beside the target, each held under an
exclusive ``flock`` by its run while it lives. A run killed with ``kill -9`` cannot remove its own,
so every writer first removes the temporary files of *its* target that no live process holds
(a concurrent run's file is locked and left alone; the lock dies with its process).
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from verl_perception.preprocess.rows import SCHEMA

ROW_GROUP_ROWS = 256
ROW_GROUP_BYTES = 64 << 20  # buffered image bytes before a row group is flushed


class AtomicParquetWriter:
    """Context manager: ``add(row)`` buffers rows and flushes row groups; ``__exit__`` publishes.

    On an exception inside the ``with`` block the temporary file is deleted and the target is left
    untouched (an older complete file stays as it was).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema = SCHEMA,
        row_group_rows: int = ROW_GROUP_ROWS,
        row_group_bytes: int = ROW_GROUP_BYTES,
    ):
        self.path = Path(path)
        self.schema = schema
        self.row_group_rows = max(1, int(row_group_rows))
        self.row_group_bytes = int(row_group_bytes)
        self.rows_written = 0
        self._buf: list[dict[str, Any]] = []
        self._buf_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: str | None = None
        self._lock_fd: int | None = None

    def _temp_name_re(self) -> re.Pattern:
        return re.compile(rf"\.{re.escape(self.path.name)}\.[a-z0-9_]{{8}}\.tmp")  # mkstemp's names

    def remove_stale_temps(self) -> list[str]:
        """Remove this target's temporary files that no live run holds; returns their paths."""
        removed = []
        pattern = self._temp_name_re()
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return removed
        for name in names:
            if not pattern.fullmatch(name):
                continue
            tmp = os.path.join(self.path.parent, name)
            try:
                fd = os.open(tmp, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: a run in progress
                os.close(fd)
                continue
            try:
                if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                    os.remove(tmp)
                    removed.append(tmp)
            except OSError:
                pass
            finally:
                os.close(fd)
        return removed

    def __enter__(self) -> AtomicParquetWriter:  # noqa: PYI034  (Self needs Python 3.11)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temps()
        while True:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: only a cleaner probing it can hold it, briefly
            try:
                same = os.stat(tmp).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:  # a concurrent cleaner took it between mkstemp and flock
                same = False
            if same:
                break
            os.close(fd)
        self._tmp, self._lock_fd = tmp, fd
        try:
            self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        except BaseException:
            self._release(remove=True)
            raise
        return self

    def _release(self, remove: bool) -> None:
        try:
            if remove and os.path.exists(self._tmp):
                os.remove(self._tmp)
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    @property
    def rows_added(self) -> int:
        """Rows given to :meth:`add` so far (written or buffered): the next row's position in the file."""
        return self.rows_written + len(self._buf)

    def add(self, row: dict[str, Any]) -> None:
        self._buf.append(row)
        self._buf_bytes += sum(len(im.get("bytes") or b"") for im in row.get("images") or [])
        if len(self._buf) >= self.row_group_rows or self._buf_bytes >= self.row_group_bytes:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        table = pa.Table.from_pylist(self._buf, schema=self.schema)
        self._writer.write_table(table, row_group_size=len(self._buf))
        self.rows_written += len(self._buf)
        self._buf, self._buf_bytes = [], 0

    def __exit__(self, exc_type, exc, tb) -> None:
        published = False
        try:
            if exc_type is None:
                self.flush()
            self._writer.close()
            if exc_type is None:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp creates 0600; publish like any new file
                os.replace(self._tmp, self.path)
                published = True
        finally:
            self._release(remove=not published)
