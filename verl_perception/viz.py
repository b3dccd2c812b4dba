"""Pictures for the evaluation report: prediction-vs-truth overlays (Pillow) and plots (matplotlib).

Overlays take coordinates in the **original** image frame (what the metrics use) and draw them on
the row's stored image, rescaled if the stored image has another size. Ground truth is green,
predictions are red. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence

import numpy as np

from verl_perception.frame import rescale

GT_COLOR = (0, 200, 0)
PRED_COLOR = (230, 30, 30)
MAX_SIDE = 800  # overlays are downscaled to this longest side to keep reports small


def sample_positions(n: int, k: int) -> list[int]:
    """``k`` evenly spread positions in ``range(n)`` (all of them when ``n <= k``)."""
    if n <= 0 or k <= 0:
        return []
    if n <= k:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def _font(size: int = 14):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _canvas(image, orig_size):
    """Copy of ``image`` at most MAX_SIDE on its longer side, and the map orig-frame -> canvas."""
    img = image.convert("RGB")
    scale = min(1.0, MAX_SIDE / max(img.size))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    dst = (img.height, img.width)

    def to_canvas(xy):
        xy = np.asarray(xy, dtype=np.float64)
        return rescale(xy, orig_size, dst) if xy.size else xy

    return img, to_canvas


def _caption(img, text: str):
    from PIL import Image, ImageDraw

    font = _font(14)
    lines = textwrap.wrap(text, width=max(20, img.width // 8)) or [""]
    band = 18 * len(lines) + 6
    out = Image.new("RGB", (img.width, img.height + band), (255, 255, 255))
    out.paste(img, (0, 0))
    d = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        d.text((4, img.height + 3 + 18 * i), line, fill=(0, 0, 0), font=font)
    return out


def _draw_boxes(draw, boxes, labels, color, font, width: int, label_above: bool):
    for i, b in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        x1, y1, x2, y2 = (float(v) for v in b)
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=color, width=width)
        if labels is not None and i < len(labels) and labels[i]:
            # ground-truth labels inside the box, predicted ones above it, so both stay readable
            draw.text((x1 + 3, y1 - 15 if label_above and y1 >= 15 else y1 + 3), str(labels[i]), fill=color, font=font)


def overlay_boxes(image, orig_size, gt_boxes, pred_boxes, path, caption: str = "", gt_labels=None,
                  pred_labels=None) -> str:  # fmt: skip
    """Draw ``(N, 4)`` xyxy ground-truth (green) and predicted (red) boxes; save a PNG; return its path."""
    from PIL import ImageDraw

    img, to_canvas = _canvas(image, orig_size)
    draw = ImageDraw.Draw(img)
    font = _font(13)
    # Ground truth wide and underneath, predictions thin on top: a perfect box shows both colours.
    _draw_boxes(
        draw, to_canvas(np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)), gt_labels, GT_COLOR, font, 6, False
    )
    _draw_boxes(
        draw, to_canvas(np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)), pred_labels, PRED_COLOR, font, 2, True
    )
    out = _caption(img, caption + "   [green: ground truth, red: prediction]")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out.save(path)
    return path


def overlay_points(image, orig_size, gt_points, pred_points, path, caption: str = "") -> str:
    """Draw ``(N, 2)`` ground-truth points (green discs) and predicted points (red crosses)."""
    from PIL import ImageDraw

    img, to_canvas = _canvas(image, orig_size)
    draw = ImageDraw.Draw(img)
    r = max(3, min(img.size) // 80)
    for x, y in to_canvas(np.asarray(gt_points, dtype=np.float64).reshape(-1, 2)):
        draw.ellipse([x - r, y - r, x + r, y + r], outline=GT_COLOR, width=2)
    for x, y in to_canvas(np.asarray(pred_points, dtype=np.float64).reshape(-1, 2)):
        draw.line([x - r, y - r, x + r, y + r], fill=PRED_COLOR, width=2)
        draw.line([x - r, y + r, x + r, y - r], fill=PRED_COLOR, width=2)
    out = _caption(img, caption + "   [green: ground truth, red: prediction]")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out.save(path)
    return path


def overlay_text(image, gt_text: str, pred_text: str, path, caption: str = "", max_chars: int = 600) -> str:
    """The page image above its reference text and the predicted text (first ``max_chars`` each)."""
    img, _ = _canvas(image, (image.height, image.width))
    clip = lambda s: s if len(s) <= max_chars else s[:max_chars] + " ..."  # noqa: E731
    text = f"{caption}\nREFERENCE: {clip(gt_text)}\nPREDICTION: {clip(pred_text)}"
    out = _caption(img, " | ".join(text.split("\n")))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out.save(path)
    return path


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def histogram(values: Sequence[float], path, title: str, xlabel: str, bins=20, vline: float | None = None) -> str:
    """Histogram PNG of ``values``; ``vline`` marks a threshold."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.hist(np.asarray(values, dtype=np.float64), bins=bins, color="#4C72B0", edgecolor="white")
    if vline is not None:
        ax.axvline(vline, color="#C44E52", linestyle="--", label=f"{vline:g}")
        ax.legend()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def count_error_histogram(errors: Sequence[int], path, title: str = "count error (pred - gt)") -> str:
    """Histogram PNG of integer count errors, one bar per integer."""
    e = np.asarray(errors, dtype=np.int64)
    lo, hi = (int(e.min()), int(e.max())) if e.size else (0, 0)
    return histogram(
        e, path, title, "predicted count - ground-truth count", bins=np.arange(lo - 0.5, hi + 1.5), vline=0
    )


def bar_chart(values: dict[str, float], path, title: str, xlabel: str = "AP") -> str:
    """Horizontal bars, one per key, sorted by value."""
    plt = _figure()
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, max(2.0, 0.22 * len(items) + 1.0)), dpi=100)
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4C72B0")
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
