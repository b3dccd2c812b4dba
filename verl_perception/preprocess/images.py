"""Reading, checking and hashing image files for preprocessing (one image at a time, never all)."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass

from PIL import Image

from verl_perception.preprocess.rows import Skip

# Formats PIL decodes and verl / qwen-vl-utils accept as raw bytes (kept as-is, no re-encode).
KEEP_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"})


@dataclass(frozen=True)
class LoadedImage:
    """An image file checked to decode; ``size`` is ``(h, w)`` in pixels as PIL reads them."""

    data: bytes
    size: tuple[int, int]
    format: str


def decode_check(data: bytes, where: str = "") -> LoadedImage:
    """Fully decode ``data`` (so truncated files are caught now, not in a training step).

    Raises :class:`Skip` ``"corrupt_image"`` when PIL cannot decode it. Images in formats outside
    :data:`KEEP_FORMATS` are re-encoded as PNG.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                w, h = img.size
                fmt = img.format or ""
                if fmt not in KEEP_FORMATS:
                    buf = io.BytesIO()
                    img.convert("RGB").save(buf, format="PNG")
                    data, fmt = buf.getvalue(), "PNG"
    except Exception as e:  # noqa: BLE001  (PIL raises OSError, SyntaxError, ValueError... for bad files)
        raise Skip("corrupt_image", f"{where}: {type(e).__name__}: {e}") from None
    if w <= 0 or h <= 0:
        raise Skip("corrupt_image", f"{where}: empty image {w}x{h}")
    return LoadedImage(data=data, size=(int(h), int(w)), format=fmt)


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Read and check one image file; :class:`Skip` ``"missing_image"`` / ``"corrupt_image"``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise Skip("missing_image", str(path)) from None
    except OSError as e:
        raise Skip("missing_image", f"{path}: {e}") from None
    return decode_check(data, str(path))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
