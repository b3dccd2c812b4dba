"""Streaming, atomic parquet output: rows are written in row groups to a temporary file that is
renamed over the target only when the run completes, so a killed run never leaves a half-written
parquet where verl would read it."""

from __future__ import annotations

import os
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

    def __enter__(self) -> AtomicParquetWriter:  # noqa: PYI034  (Self needs Python 3.11)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._writer = pq.ParquetWriter(self._tmp, self.schema, compression="zstd")
        return self

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
        try:
            if exc_type is None:
                self.flush()
            self._writer.close()
        finally:
            if exc_type is None:
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp creates 0600; publish like any new file
                os.replace(self._tmp, self.path)
            elif os.path.exists(self._tmp):
                os.remove(self._tmp)
