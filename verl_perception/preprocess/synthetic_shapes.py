"""A synthetic grounding task the project generates: coloured shapes on a position-coded background.

Each image holds one to three solid shapes (circle, square or triangle in one of four colours, no two
alike, none overlapping) on a background whose colour ramps give positions away (``position``, the
default; :func:`_position_coded` says why) or on a random low-contrast texture (``texture``); the prompt
names one of them ("the red circle") and the ground truth is that shape's box in the input frame. It exists so that a short GPU run
can show that GRPO with our rewards *teaches* (``recipes/learning_check.sh``): the task is learnable by a
small model, its answer is checkable, and it needs no download.

Rows go through the normal preprocessing path (:func:`verl_perception.preprocess.runner.run` ->
:func:`~verl_perception.preprocess.rows.make_row`, the grounding prompt, frame pinning), with
``data_source = "synthetic_shapes"`` and ``extra_info["task"] = "grounding"`` (the contract's override:
the grounding reward and metrics apply, and verl reports validation metrics under
``val-core/synthetic_shapes/...``).

The images are drawn at ``orig_size`` (default 300 x 400, not a multiple of 28), so the model sees a
resized frame (168 x 252 under the learning check's pixel bounds) and the ground truth is stored in it:
a frame bug anywhere in the pipeline shows as a low reward. One size for all images keeps the task
learnable for a small model in minutes; ``--sizes`` varies it.

Deterministic: row ``i`` of split ``s`` is drawn from ``numpy.random.default_rng([seed, split id, i])``,
so a row depends only on (seed, split, i), train and val never share a stream, and files are
byte-identical across runs and worker counts.

    python -m verl_perception.preprocess.synthetic_shapes --output-dir DIR --split train --num-rows 4000
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from verl_perception.frame import DEFAULT_FRAME, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, to_input
from verl_perception.preprocess import runner
from verl_perception.preprocess.prompts import grounding_prompt
from verl_perception.preprocess.rows import frame_for, make_row, round_coords
from verl_perception.tasks import GROUNDING

DATA_SOURCE = "synthetic_shapes"
SPLITS = ("train", "val")
# Separate RNG streams per split: the validation images are never training images.
SPLIT_IDS = {"train": 0, "val": 1}

# Saturated colours far from the background's value range, so every shape pixel is exactly its colour
# and no background pixel is (the tests rely on it).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "green": (30, 190, 50),
    "blue": (30, 60, 235),
    "yellow": (245, 215, 20),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUND_RANGE = (70, 180)  # per-channel range of the texture (shape channels are <= 60 or >= 190)

DEFAULT_ORIG_SIZE = (300, 400)  # (h, w)
MAX_SHAPES = 3
DISTINCT_SHAPES = len(COLORS) * len(SHAPES)  # distinct (colour, shape) pairs: the most shapes one image can hold
SIDE_FRACTION = (0.18, 0.42)  # shape side, as a fraction of the image's short side
PLACEMENT_TRIES = 200


@dataclass(frozen=True)
class Shape:
    """One drawn shape; ``box`` is ``[x1, y1, x2, y2]`` in original-image pixels (continuous
    convention: the shape covers columns x1 .. x2-1), tight around the drawn pixels."""

    color: str
    kind: str
    box: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"


@dataclass(frozen=True)
class Scene:
    """A generated image: its PNG bytes, size ``(h, w)``, its shapes and which one the prompt names."""

    png: bytes
    size: tuple[int, int]
    shapes: tuple[Shape, ...]
    target: int

    @property
    def target_shape(self) -> Shape:
        return self.shapes[self.target]


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``(h, w, 3)`` uint8 background within BACKGROUND_RANGE: a random tint, soft stripes and a blotchy
    noise of 8-pixel cells (per-pixel noise would make every PNG ~250 kB instead of ~30 kB)."""
    lo, hi = BACKGROUND_RANGE
    base = rng.uniform(lo + 25, hi - 25, size=3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(12, 40)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period))[..., None]
    cell = 8
    cells = rng.normal(0, 8, size=(-(-h // cell), -(-w // cell), 3)).astype(np.float32)
    blotches = np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[:h, :w]
    amp = (rng.uniform(5, 15) * rng.choice([-1.0, 1.0], size=3)).astype(np.float32)
    return np.clip(base + amp * stripes + blotches, lo, hi).astype(np.uint8)


def _position_coded(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``(h, w, 3)`` uint8 background within BACKGROUND_RANGE whose colour says where a pixel is: red rises
    from left to right, green from top to bottom, blue is a random tint, under the same blotchy noise as
    :func:`_texture` (std 4 instead of 8, so the ramps stay readable).

    Why: Qwen2.5-VL has no absolute position embedding; its image tokens carry position only through
    rotary phases, which a model trained from scratch for minutes does not learn to read out (measured:
    mean IoU <= 0.12 after 1,500 warm-start steps on :func:`_texture`). Here the pixels next to a shape
    give its position directly, as a real model's pretrained features would. (Not yet shown to speed the
    warm start up: 1,500 CPU steps reached the same mean IoU on both backgrounds; docs/recipes.md.)"""
    lo, hi = BACKGROUND_RANGE
    margin = 10.0  # room for the noise before clipping, so the ramp keeps its slope up to the edges
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), dtype=np.float32)
    img[..., 0] = lo + margin + (hi - lo - 2 * margin) * xx / max(w - 1, 1)
    img[..., 1] = lo + margin + (hi - lo - 2 * margin) * yy / max(h - 1, 1)
    img[..., 2] = rng.uniform(lo + 25, hi - 25)
    cell = 8
    cells = rng.normal(0, 4, size=(-(-h // cell), -(-w // cell), 3)).astype(np.float32)
    img += np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[:h, :w]
    return np.clip(np.rint(img), lo, hi).astype(np.uint8)


BACKGROUNDS = {"position": _position_coded, "texture": _texture}


def _check_scene_args(background: str, max_shapes: int) -> None:
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {sorted(BACKGROUNDS)}, got {background!r}")
    if not 1 <= int(max_shapes) <= DISTINCT_SHAPES:
        raise ValueError(f"max_shapes must be 1..{DISTINCT_SHAPES} (distinct colour-shape pairs), got {max_shapes}")


def _draw(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], fill: tuple[int, int, int]) -> None:
    # PIL's corner coordinates are inclusive: the last drawn column of [x1, x2) is x2 - 1.
    x1, y1, x2, y2 = box
    if kind == "circle":
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=fill)
    elif kind == "square":
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=fill)
    elif kind == "triangle":
        # apex at the top centre; odd widths keep it symmetric
        draw.polygon([((x1 + x2 - 1) / 2, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)], fill=fill)
    else:
        raise ValueError(f"unknown shape {kind!r}")


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``[x1, y1, x2, y2]`` (continuous convention) of the True pixels of a ``(h, w)`` mask."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _overlaps(a: tuple[int, ...], b: tuple[int, ...], gap: int) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def make_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = DEFAULT_ORIG_SIZE,
    background: str = "position",
    max_shapes: int = MAX_SHAPES,
) -> Scene:
    """Draw one scene of size ``(h, w)`` from ``rng``: 1..max_shapes distinct, non-overlapping shapes on a
    ``background`` (a key of :data:`BACKGROUNDS`). ``max_shapes=1``: the named shape is the only one (no
    need to tell shapes apart: an easier task)."""
    _check_scene_args(background, max_shapes)
    h, w = int(size[0]), int(size[1])
    short = min(h, w)
    lo, hi = (max(8, int(round(f * short))) for f in SIDE_FRACTION)
    kinds = [(c, k) for c in COLORS for k in SHAPES]
    n = int(rng.integers(1, max_shapes + 1))
    picks = rng.choice(len(kinds), size=n, replace=False)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in picks:
        for _ in range(PLACEMENT_TRIES):
            side = int(rng.integers(lo, hi + 1))
            x1, y1 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            box = (x1, y1, x1 + side, y1 + side)
            if not any(_overlaps(box, b, gap=4) for b in boxes):
                boxes.append(box)
                break
    picks = picks[: len(boxes)]  # a shape that found no free place is left out (rare: at least one fits)

    img = Image.fromarray(BACKGROUNDS[background](rng, h, w))
    draw = ImageDraw.Draw(img)
    shapes = []
    for p, box in zip(picks, boxes):
        color, kind = kinds[int(p)]
        _draw(draw, kind, box, COLORS[color])
    pixels = np.asarray(img)
    for p, box in zip(picks, boxes):
        color, kind = kinds[int(p)]
        # The drawn pixels, not the requested square: a triangle's or circle's rasterisation can fall
        # short of the square's edge by a pixel, and the ground truth must be what is visible.
        x1, y1, x2, y2 = box
        mask = np.zeros((h, w), dtype=bool)
        mask[y1:y2, x1:x2] = (pixels[y1:y2, x1:x2] == COLORS[color]).all(axis=-1)
        shapes.append(Shape(color, kind, _tight_box(mask)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return Scene(png=buf.getvalue(), size=(h, w), shapes=tuple(shapes), target=int(rng.integers(len(shapes))))


def category_id(shape: Shape) -> int:
    """A stable id of the shape's (colour, kind) pair: its position in COLORS x SHAPES."""
    return list(COLORS).index(shape.color) * len(SHAPES) + SHAPES.index(shape.kind)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The RNG of row ``index`` of ``split``: depends on nothing else."""
    return np.random.default_rng([int(seed), SPLIT_IDS[split], int(index)])


@dataclass(frozen=True)
class Context:
    split: str
    seed: int
    sizes: tuple[tuple[int, int], ...]
    min_pixels: int
    max_pixels: int
    background: str = "position"
    max_shapes: int = MAX_SHAPES


def build(ctx: Context, record: dict):
    """One record ``{"index": i}`` -> (row, {}): draws scene i of the split and builds its grounding row."""
    i = int(record["index"])
    rng = scene_rng(ctx.seed, ctx.split, i)
    size = ctx.sizes[int(rng.integers(len(ctx.sizes)))] if len(ctx.sizes) > 1 else ctx.sizes[0]
    scene = make_scene(rng, size, ctx.background, ctx.max_shapes)
    target = scene.target_shape
    inp = frame_for(scene.size, ctx.min_pixels, ctx.max_pixels)
    gt = {"bbox": round_coords(to_input(np.asarray([target.box], dtype=np.float64), scene.size, inp))[0]}
    row = make_row(
        data_source=DATA_SOURCE,
        task=GROUNDING,
        instruction=grounding_prompt(target.name),
        image_bytes=scene.png,
        orig_size=scene.size,
        input_size=inp,
        ground_truth=gt,
        split=ctx.split,
        image_id=i,
        file_name=None,
        min_pixels=ctx.min_pixels,
        max_pixels=ctx.max_pixels,
        extra={"expression": target.name, "category_id": category_id(target)},
    )
    return row, {}


def convert(
    output_dir: str | Path,
    split: str,
    num_rows: int,
    *,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = (DEFAULT_ORIG_SIZE,),
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
    progress: bool = False,
    row_group_rows: int = runner.ROW_GROUP_ROWS,
    background: str = "position",
    max_shapes: int = MAX_SHAPES,
) -> runner.Summary:
    """Write ``output_dir/<split>.parquet`` with ``num_rows`` generated rows; returns the run's summary.

    Strict: a generated row that cannot be built is a bug, never a skip.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if num_rows < 1:
        raise ValueError(f"num_rows must be >= 1, got {num_rows}")
    sizes = tuple((int(h), int(w)) for h, w in sizes)
    if not sizes or any(h < 32 or w < 32 for h, w in sizes):
        raise ValueError(f"image sizes must be at least 32 x 32, got {sizes}")
    _check_scene_args(background, max_shapes)
    ctx = Context(split, int(seed), sizes, int(min_pixels), int(max_pixels), background, int(max_shapes))
    return runner.run(
        ({"key": f"{split} {i}", "index": i} for i in range(num_rows)),
        partial(build, ctx),
        Path(output_dir) / f"{split}.parquet",
        total=num_rows,
        workers=workers,
        strict=True,
        desc=f"{DATA_SOURCE} {split}",
        row_group_rows=row_group_rows,
        progress=progress,
    )


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW (e.g. 300x400), got {text!r}") from None
    return h, w


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verl_perception.preprocess.synthetic_shapes",
        description="Generate the synthetic-shapes grounding task as verl parquet (deterministic by --seed).",
    )
    p.add_argument("--num-rows", type=int, required=True, help="rows to generate")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (row i depends only on seed, split, i)")
    p.add_argument("--sizes", type=_size, nargs="+", default=[DEFAULT_ORIG_SIZE],
                   help="original image sizes HxW, one drawn per row (default 300x400)")
    p.add_argument("--background", choices=sorted(BACKGROUNDS), default="position",
                   help="position: colour ramps that give away where a pixel is (default); texture: random stripes "
                        "and blotches, position only through the image tokens' rotary phases")
    p.add_argument("--max-shapes", type=int, default=MAX_SHAPES,
                   help=f"at most this many shapes per image, 1..{DISTINCT_SHAPES} (default {MAX_SHAPES}; "
                        "1: the named shape is alone)")
    runner.add_common_args(p, SPLITS)
    return p


def main(argv: list[str] | None = None) -> runner.Summary:
    p = parser()
    args = p.parse_args(argv)
    runner.check_common_args(p, args)
    if args.model_family != DEFAULT_FRAME.name:
        # the rows are built in Qwen2.5-VL's frame (factor 28); another family's rows would be silently wrong
        p.error(f"synthetic shapes are generated for {DEFAULT_FRAME.name} only, got --model-family {args.model_family}")
    num_rows = args.num_rows if args.limit is None else min(args.num_rows, args.limit)
    with runner.cli_errors():
        summary = convert(
            args.output_dir, args.split, num_rows, seed=args.seed, sizes=tuple(args.sizes),
            min_pixels=args.min_pixels, max_pixels=args.max_pixels, workers=args.workers,
            progress=not args.quiet, row_group_rows=args.row_group_size, background=args.background,
            max_shapes=args.max_shapes,
        )
    return runner.finish(summary)


if __name__ == "__main__":
    main()
