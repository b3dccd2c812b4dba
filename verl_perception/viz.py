"""Pictures for the evaluation report: prediction-vs-truth overlays (Pillow) and plots (matplotlib).

Overlays take coordinates in the **original** image frame (what the metrics use) and draw them on
the row's stored image, rescaled if the stored image has another size. Ground truth is green,
predictions are red. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from verl_perception.frame import rescale

GT_COLOR = (0, 200, 0)
PRED_COLOR = (230, 30, 30)
# label backgrounds: darker shades of the box colours, so white text on them is readable
GT_LABEL_BG = (0, 110, 0)
PRED_LABEL_BG = (170, 0, 0)
CANVAS_SIDE = 800  # overlays are scaled to this longest side: small images get readable labels too
LEGEND = (("ground truth", GT_COLOR), ("prediction", PRED_COLOR))


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


def _text_size(font, text: str) -> tuple[float, float]:
    left, top, right, bottom = font.getbbox(text or " ")
    return right - left, bottom - top


def _canvas(image, orig_size):
    """Copy of ``image`` scaled to CANVAS_SIDE on its longer side, and the map orig-frame -> canvas."""
    img = image.convert("RGB")
    scale = CANVAS_SIDE / max(img.size)
    if abs(scale - 1.0) > 1e-3:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    dst = (img.height, img.width)

    def to_canvas(xy):
        xy = np.asarray(xy, dtype=np.float64)
        return rescale(xy, orig_size, dst) if xy.size else xy

    return img, to_canvas


def wrap_text(text: str, font, width: float) -> list[str]:
    """Lines of ``text`` no wider than ``width`` pixels, broken between words ("\\n" starts a new
    line; a single word wider than the line is cut)."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if _text_size(font, candidate)[0] <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            while _text_size(font, word)[0] > width and len(word) > 1:  # one very long token
                cut = max(1, int(len(word) * width / _text_size(font, word)[0]))
                lines.append(word[:cut])
                word = word[cut:]
            line = word
        lines.append(line)
    return lines


def _caption(img, text: str, legend: bool = True):
    """``img`` above a white band: the colour legend (boxes and points only), then ``text``."""
    from PIL import Image, ImageDraw

    font = _font(max(15, img.width // 50))
    line_h = int(_text_size(font, "Ag")[1] * 1.45) + 2
    margin = 8
    lines = wrap_text(text, font, img.width - 2 * margin)
    band = margin + line_h * (len(lines) + (1 if legend else 0)) + margin
    out = Image.new("RGB", (img.width, img.height + band), (255, 255, 255))
    out.paste(img, (0, 0))
    d = ImageDraw.Draw(out)
    y = img.height + margin
    if legend:
        x = margin
        for name, color in LEGEND:
            box = line_h - 8
            d.rectangle([x, y + 3, x + box, y + 3 + box], fill=color)
            d.text((x + box + 6, y), name, fill=(0, 0, 0), font=font)
            x += box + 6 + _text_size(font, name)[0] + 3 * margin
        y += line_h
    for line in lines:
        d.text((margin, y), line, fill=(0, 0, 0), font=font)
        y += line_h
    return out


def _label(draw, box, text: str, bg, font, image_size, prediction: bool) -> None:
    """``text`` in white on a ``bg`` tag at a box: ground truth at the top-left corner, inside the
    box; predictions at the top-right corner, above the box (inside it when there is no room), so a
    predicted and a ground-truth label of the same box do not cover each other. Kept in the image."""
    x1, y1, x2, y2 = box
    w, h = _text_size(font, text)
    pad = 3
    tw, th = w + 2 * pad, h + 2 * pad + 2
    if prediction:
        left = x2 - tw
        top = y1 - th if y1 - th >= 0 else y1
    else:
        left, top = x1, y1
    left = min(max(0.0, left), max(0.0, image_size[0] - tw))
    top = min(max(0.0, top), max(0.0, image_size[1] - th))
    draw.rectangle([left, top, left + tw, top + th], fill=bg)
    draw.text((left + pad, top + pad - font.getbbox(text)[1] + 1), text, fill=(255, 255, 255), font=font)


def _draw_boxes(draw, boxes, labels, color, label_bg, font, width: int, prediction: bool, image_size):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for b in boxes:
        x1, y1, x2, y2 = (float(v) for v in b)
        draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=color, width=width)
    # tags after all boxes, so no box line crosses a tag
    for i, b in enumerate(boxes):
        if labels is not None and i < len(labels) and labels[i]:
            x1, y1, x2, y2 = (float(v) for v in b)
            _label(draw, (x1, y1, max(x1, x2), max(y1, y2)), str(labels[i]), label_bg, font, image_size, prediction)


def overlay_boxes(image, orig_size, gt_boxes, pred_boxes, path, caption: str = "", gt_labels=None,
                  pred_labels=None) -> str:  # fmt: skip
    """Draw ``(N, 4)`` xyxy ground-truth (green) and predicted (red) boxes; save a PNG; return its path.

    Labels are white on a dark tag of the box's colour: ground truth inside the box's top-left
    corner, predictions above its top-right corner. The legend and ``caption`` are below the image.
    """
    from PIL import ImageDraw

    img, to_canvas = _canvas(image, orig_size)
    draw = ImageDraw.Draw(img)
    font = _font(max(14, img.width // 55))
    # Ground truth wide and underneath, predictions thin on top: a perfect box shows both colours.
    gt = to_canvas(np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4))
    pred = to_canvas(np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4))
    _draw_boxes(draw, gt, gt_labels, GT_COLOR, GT_LABEL_BG, font, 6, False, img.size)
    _draw_boxes(draw, pred, pred_labels, PRED_COLOR, PRED_LABEL_BG, font, 2, True, img.size)
    out = _caption(img, caption)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out.save(path)
    return path


def overlay_points(image, orig_size, gt_points, pred_points, path, caption: str = "") -> str:
    """Draw ``(N, 2)`` ground-truth points (green rings) and predicted points (red crosses)."""
    from PIL import ImageDraw

    img, to_canvas = _canvas(image, orig_size)
    draw = ImageDraw.Draw(img)
    r = max(5, min(img.size) // 60)
    for x, y in to_canvas(np.asarray(gt_points, dtype=np.float64).reshape(-1, 2)):
        draw.ellipse([x - r, y - r, x + r, y + r], outline=GT_COLOR, width=3)
    for x, y in to_canvas(np.asarray(pred_points, dtype=np.float64).reshape(-1, 2)):
        draw.line([x - r, y - r, x + r, y + r], fill=PRED_COLOR, width=3)
        draw.line([x - r, y + r, x + r, y - r], fill=PRED_COLOR, width=3)
    out = _caption(img, caption)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out.save(path)
    return path


def overlay_text(image, gt_text: str, pred_text: str | None, path, caption: str = "", max_chars: int = 600) -> str:
    """The page image above the caption, its reference text and the predicted text (first
    ``max_chars`` of each); ``pred_text`` None means the row has no response."""
    img, _ = _canvas(image, (image.height, image.width))
    clip = lambda s: s if len(s) <= max_chars else s[:max_chars] + " ..."  # noqa: E731
    flat = lambda s: " ".join(s.split())  # noqa: E731  (the page's line breaks would make the band tall)
    if pred_text is None:
        shown = "(no response)"
    elif not pred_text.strip():
        shown = "(empty answer)"
    else:
        shown = clip(flat(pred_text))
    text = f"{caption}\nREFERENCE: {clip(flat(gt_text))}\nPREDICTION: {shown}"
    out = _caption(img, text, legend=False)
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
