"""Every instruction the model is given, in one place.

Each prompt asks for the Qwen2.5-VL native JSON answer of the rewards contract (absolute pixels of
the image the model sees). The user turn is ``"<image>" + instruction``: verl's ``RLHFDataset``
replaces the ``<image>`` placeholder by the row's image.
"""

from __future__ import annotations

from collections.abc import Sequence

IMAGE_PLACEHOLDER = "<image>"

# The paper's detection prompt (Perception-R1's COCO evaluation), followed by the category list.
DETECTION = (
    "Locate every item from the category list in the image and output the coordinates in JSON format. "
    "The category set includes {categories}."
)
# The paper's grounding prompt, made explicit about Qwen2.5-VL's JSON box answer.
GROUNDING = (
    'Output the bounding box of the {expression} in the image in JSON format, as {{"bbox_2d": [x1, y1, x2, y2], '
    '"label": "{expression}"}}.'
)
# Counting is answered by pointing: one point per object, the count being the number of points.
COUNTING = (
    'Count the {label} in the image: point to each one and output all the points in JSON format, as '
    '[{{"point_2d": [x, y], "label": "{label}"}}, ...].'
)
OCR = "Read all the text in the image and output it as plain text, in reading order."


def _clean(text: str) -> str:
    # One line, no placeholder injection from dataset text: a stray "<image>" in an expression
    # would make verl look for a second image.
    text = " ".join(str(text).split())
    return text.replace(IMAGE_PLACEHOLDER, "image")


def detection_prompt(category_names: Sequence[str]) -> str:
    """The detection instruction listing ``category_names`` (in the given order)."""
    names = [_clean(n) for n in category_names]
    if not names:
        raise ValueError("the detection prompt needs at least one category name")
    return DETECTION.format(categories=", ".join(names))


def grounding_prompt(expression: str) -> str:
    """The grounding instruction for one referring expression."""
    expression = _clean(expression).replace('"', "'")
    if not expression:
        raise ValueError("empty referring expression")
    return GROUNDING.format(expression=expression)


def counting_prompt(label: str) -> str:
    """The counting (pointing) instruction for one object name."""
    label = _clean(label).replace('"', "'")
    if not label:
        raise ValueError("empty object label")
    return COUNTING.format(label=label)


def ocr_prompt() -> str:
    """The page-OCR instruction."""
    return OCR


def user_messages(instruction: str) -> list[dict[str, str]]:
    """verl's chat ``prompt`` column: one user turn holding the image placeholder and the instruction."""
    return [{"role": "user", "content": IMAGE_PLACEHOLDER + instruction}]
