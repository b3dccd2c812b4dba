"""Overlay pictures: tags behind labels, the legend outside the image, captions wrapped between words."""

from __future__ import annotations

import numpy as np
from PIL import Image

from verl_perception import viz
from verl_perception.evaluate import has_prediction, overlay_positions


def test_wrap_text_breaks_between_words_within_the_width():
    font = viz._font(16)
    text = 'row 12 (refcoco+/testA): "the man in the blue shirt on the left holding a very long umbrella"\nIoU 0.41'
    lines = viz.wrap_text(text, font, 300)
    assert len(lines) > 2 and lines[-1] == "IoU 0.41"
    assert all(viz._text_size(font, line)[0] <= 300 for line in lines)
    assert " ".join(lines[:-1]).split() == text.split("\n")[0].split()  # no word cut or lost
    assert viz.wrap_text("x" * 200, font, 100)[0].startswith("x")  # one long token is cut, not overflowing


def test_boxes_overlay_has_label_tags_and_the_legend_below_the_image(tmp_path):
    image = Image.new("RGB", (400, 300), (250, 250, 250))  # light: white text straight on it would vanish
    path = viz.overlay_boxes(image, (300, 400), [[40, 60, 200, 250]], [[50, 70, 210, 240]], tmp_path / "o.png",
                             "row 0: caption", ["person"], ["person"])  # fmt: skip
    with Image.open(path) as im:
        px = np.asarray(im.convert("RGB"))
    h = round(300 * viz.CANVAS_SIDE / 400)  # scaled to 800 px wide
    assert px.shape[1] == viz.CANVAS_SIDE and px.shape[0] > h  # a band below the image
    picture, band = px[:h], px[h:]
    for tag in (viz.GT_LABEL_BG, viz.PRED_LABEL_BG):
        assert (picture == tag).all(axis=-1).sum() > 200, tag  # a filled tag behind each label
    for swatch in (viz.GT_COLOR, viz.PRED_COLOR):
        assert (band == swatch).all(axis=-1).sum() > 50, swatch  # the legend is in the band, not the image


def test_overlays_prefer_rows_with_a_prediction():
    per_row = [{"pred_box": None}, {"pred_box": None}, {"pred_box": [1, 2, 3, 4]}, {"pred_box": None}]
    assert overlay_positions("grounding", per_row, 2) == [2, 0]
    assert has_prediction("ocr", {"pred_text": "  "}) is False and has_prediction("detection", {"pred": [{}]})
