"""verl dataset adapter that keeps the ground truth in the frame the model actually sees.

Preprocessing stores ground truth in the input frame ``extra_info["input_size"]`` and pins that
frame in the image dict (``resized_height``/``resized_width``, honoured by qwen-vl-utils). Two
things can still change the frame at training time: the processor's own pixel bounds (its
``min_pixels``/``max_pixels``, or ``data.mm_processor_kwargs``) resize the fetched image again, and
a recipe may want another pixel budget than the one the parquet was made with. The adapter:

1. optionally re-pins every image to new bounds (``+data.perception_min_pixels=N``,
   ``+data.perception_max_pixels=N``), computed from ``extra_info["orig_size"]`` by
   :mod:`verl_perception.frame`, so the length filter and the rollout see the new frame;
2. measures, per distinct image size and pin, the frame verl's own pipeline produces: the class's
   ``_process_multi_modal_info`` (qwen-vl-utils ``fetch_image``) and then the processor with
   ``data.mm_processor_kwargs``, exactly as the rollout calls them (``image_grid_thw`` x patch size);
3. when that frame differs from ``extra_info["input_size"]``, rescales the ground truth into it and
   updates ``input_size`` (``+data.perception_frame_mismatch=rescale``, the default), or refuses
   with an error naming the settings (``=error``);
4. checks the row's model family (``extra_info["model_family"]``: resize factor and coordinate
   convention, :mod:`verl_perception.frame`) against the processor's (``Qwen3VLProcessor`` ->
   ``qwen3_vl``..., or ``+data.perception_model_family=NAME``): a parquet made for another family
   is refused (``=error``) or, as for a frame mismatch, rescaled into the processor's frame and
   relabelled, so the reward reads the model's answers in its own convention.

Every distinct frame is measured once, while the dataset is built, and the same measurements give
verl's overlong-prompt filter its per-row decision without running the processor on every image
(:mod:`verl_perception.length_filter`): start-up takes seconds instead of hours at COCO scale.

Use it with ``data.custom_cls.path=pkg://verl_perception.dataset
data.custom_cls.name=PerceptionRLHFDataset``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_perception.frame import (
    check_pixel_bounds,
    family_of,
    family_of_processor,
    get_family,
    pin,
    rescale_ground_truth,
)
from verl_perception.frame import input_size as frame_input_size
from verl_perception.length_filter import FRAME_KEYS, ImageKey, Unsupported, iter_length_keys

logger = logging.getLogger(__name__)

MISMATCH_POLICIES = ("rescale", "error")
_MISSING = object()
TEXT_CACHE_SIZE = 4096  # distinct prompt texts whose token counts are kept while filtering


class FrameMismatchError(ValueError):
    """The processor produces another frame than the parquet's ground truth, and the policy is ``error``."""


@dataclass(frozen=True)
class ImageMeasure:
    """What verl's image path makes of one image: the frame ``(h, w)`` the model sees and the number
    of image tokens the processor puts in the prompt for it (``None`` when it cannot tell)."""

    frame: tuple[int, int]
    tokens: int | None


def measure_image(processor, image_item: Mapping[str, Any], image_size_wh, dataset_cls=RLHFDataset,
                  image_patch_size: int = 14, config=None, mm_processor_kwargs=None) -> ImageMeasure | None:
    """:class:`ImageMeasure` of verl's image path for an image of ``image_size_wh`` (PIL order).

    Runs ``dataset_cls._process_multi_modal_info`` (qwen-vl-utils, honouring the dict's
    ``resized_*``/``min_pixels``/``max_pixels`` keys) on a blank image of that size, then the
    processor as verl calls it, and reads ``image_grid_thw`` and the ``image_token_id`` count of
    ``input_ids``. Returns ``None`` when the processor reports no ``image_grid_thw`` (not a
    Qwen-VL-style processor: the frame cannot be measured).
    """
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    probe = {k: v for k, v in image_item.items() if k not in ("bytes", "image", "type", "path")}
    probe["image"] = Image.new("RGB", tuple(int(v) for v in image_size_wh))
    # (a pinned size does not depend on the source image: callers may pass a small stand-in size)
    messages = [{"role": "user", "content": [{"type": "image", **probe}, {"type": "text", "text": "."}]}]
    images, _, _ = dataset_cls._process_multi_modal_info(messages, image_patch_size, config)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    out = build_multimodal_processor_inputs(processor, text=[text], images=images,
                                            mm_processor_kwargs=mm_processor_kwargs or {})
    grid = out.get("image_grid_thw")
    if grid is None:
        return None
    _, gh, gw = (int(v) for v in grid[0])
    patch = int(getattr(processor.image_processor, "patch_size", image_patch_size))
    pad_id = getattr(processor, "image_token_id", None)
    tokens = None if pad_id is None else int((out["input_ids"][0] == pad_id).sum())
    return ImageMeasure((gh * patch, gw * patch), tokens)


def processor_frame(processor, image_item: Mapping[str, Any], image_size_wh, dataset_cls=RLHFDataset,
                    image_patch_size: int = 14, config=None, mm_processor_kwargs=None) -> tuple[int, int] | None:
    """``(h, w)`` of the frame verl's image path produces for an image of ``image_size_wh`` (PIL order);
    ``None`` when it cannot be measured (see :func:`measure_image`)."""
    m = measure_image(processor, image_item, image_size_wh, dataset_cls, image_patch_size, config, mm_processor_kwargs)
    return None if m is None else m.frame


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run the block with ``n`` torch intra-op threads. One probe image is too small to gain from
    threads, and when many processes measure at once (DataLoader workers, filter workers) every
    one of them spreading over all cores made each probe about 4x slower on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class PerceptionRLHFDataset(RLHFDataset):
    """:class:`verl.utils.dataset.rl_dataset.RLHFDataset` that aligns ground truth with the real input frame.

    Extra ``data`` settings (all optional; add with ``+data.<key>=...``):

    * ``perception_frame_mismatch``: ``rescale`` (default) or ``error``.
    * ``perception_min_pixels`` / ``perception_max_pixels``: re-pin images to these bounds.
    * ``perception_model_family``: the model family (default: the processor's, when it tells).
    """

    def __init__(self, data_files, tokenizer, config, processor=None, max_samples: int = -1):
        policy = str(config.get("perception_frame_mismatch", "rescale")).lower()
        if policy not in MISMATCH_POLICIES:
            raise ValueError(f"data.perception_frame_mismatch must be one of {MISMATCH_POLICIES}, got {policy!r}")
        self.frame_policy = policy
        named = config.get("perception_model_family")
        # None: neither set nor told by the processor; rows then keep their own family
        self.model_family = get_family(named) if named else family_of_processor(processor)
        lo, hi = config.get("perception_min_pixels"), config.get("perception_max_pixels")
        self.repin_bounds: tuple[int, int] | None = None
        if lo is not None or hi is not None:
            spec = self.model_family or get_family()
            bounds = (int(lo if lo is not None else spec.min_pixels), int(hi if hi is not None else spec.max_pixels))
            check_pixel_bounds(*bounds, spec)
            self.repin_bounds = bounds
        self._frames: dict[tuple, ImageMeasure | None] = {}
        self._text_tokens: dict[tuple, int | None] = {}
        self._texts_tokenized = 0
        self.length_filter_stats: dict[str, Any] | None = None
        self._warned: set[str] = set()
        self.frame_stats = {"checked": 0, "rescaled": 0, "unmeasured": 0}
        super().__init__(data_files, tokenizer, config, processor=processor, max_samples=max_samples)

    # -- re-pinning (also seen by verl's overlong-prompt filter, which calls _build_messages) --------
    def _build_messages(self, example: dict, key: str):
        if self.repin_bounds is not None:
            self._repin(example)
        return super()._build_messages(example, key)

    def _repin(self, example: dict) -> None:
        info = example.get("extra_info") or {}
        orig = info.get("orig_size")
        images = example.get(self.image_key) or []
        if orig is None or len(images) != 1 or not isinstance(images[0], dict):
            return
        spec = self.model_family or family_of(info)
        new = frame_input_size(int(orig[0]), int(orig[1]), *self.repin_bounds, family=spec)
        images[0].update(pin(new, spec))
        for k in ("min_pixels", "max_pixels"):
            images[0].pop(k, None)

    # -- the overlong-prompt filter, from token counts per distinct text and frame -------------------
    def maybe_filter_out_long_prompts(self, dataframe=None):
        """verl's ``data.filter_overlong_prompts``, with the same decision per row, without running the
        processor on every image (see :mod:`verl_perception.length_filter`); with the filter off,
        only the frames are measured. Either way every distinct frame is measured here, once, so
        ``__getitem__`` (and each DataLoader worker forked after construction) finds it cached.

        Falls back to verl's per-row filter (with a warning) for tables the split count does not
        cover, or when the split count disagrees with verl's own measurement of sample rows.
        """
        if self.processor is None or dataframe is None:
            return super().maybe_filter_out_long_prompts(dataframe)
        t0 = time.perf_counter()
        if not self.filter_overlong_prompts:
            try:
                for _, images in self._length_keys(dataframe):
                    for im in images:
                        self.measure(im.size_wh, im.keys)
            except Unsupported as exc:
                logger.info("frames not measured at construction (%s): measured per row instead", exc)
            return dataframe
        try:
            lengths = self.prompt_lengths(dataframe)
        except Unsupported as exc:
            logger.warning("length filter: %s; running verl's per-row filter instead", exc)
            return super().maybe_filter_out_long_prompts(dataframe)
        keep = np.flatnonzero(lengths <= self.max_prompt_length)
        self.length_filter_stats = {
            "rows": len(lengths), "kept": len(keep), "longest": int(lengths.max(initial=0)),
            "texts_tokenized": self._texts_tokenized, "frames_measured": len(self._frames),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        print(f"Filtered prompts longer than {self.max_prompt_length} tokens from token counts per distinct text "
              f"and frame: {self.length_filter_stats}")
        print(f"filter dataset len: {len(keep)}")
        return dataframe if len(keep) == len(dataframe) else dataframe.select(keep)

    def _length_keys(self, dataframe):
        """``(messages key, [ImageKey])`` per row, with the re-pinning of :meth:`_repin` applied."""
        rows = iter_length_keys(dataframe, self.prompt_key, self.image_key, (self.video_key, self.audio_key),
                                info_fields=("orig_size", "model_family") if self.repin_bounds is not None else ())
        for messages, images, info in rows:
            orig = info.get("orig_size")
            if self.repin_bounds is not None and orig is not None and len(images) == 1:
                spec = self.model_family or family_of(info)
                hw = frame_input_size(int(orig[0]), int(orig[1]), *self.repin_bounds, family=spec)
                images = [ImageKey(None, (hw[0], hw[1], None, None))]
            yield messages, images

    def prompt_lengths(self, dataframe) -> np.ndarray:
        """``(N,)`` int64 prompt length of every row, as verl's filter counts it (``input_ids`` of the
        processor on the chat-templated prompt and the row's images); rows verl's filter would fail
        on get ``max_prompt_length + 1``, as there. Raises :class:`Unsupported` when the split count
        does not apply, or when it disagrees with verl's own count on the first and the longest row
        that verl can build."""
        lengths = np.empty(len(dataframe), dtype=np.int64)
        unbuildable = np.zeros(len(dataframe), dtype=bool)
        texts = 0
        for i, (messages, images) in enumerate(self._length_keys(dataframe)):
            n = self._text_tokens.get((messages, len(images)), _MISSING)
            if n is _MISSING:
                if len(self._text_tokens) >= TEXT_CACHE_SIZE:  # RefCOCO: one text per row; keep memory flat
                    self._text_tokens.clear()
                n = self._text_tokens[(messages, len(images))] = self._count_text_tokens(messages, len(images))
                texts += 1
            if n is None:
                lengths[i] = self.max_prompt_length + 1
                unbuildable[i] = True
                continue
            total = n - len(images)
            for im in images:
                m = self.measure(im.size_wh, im.keys)
                if m is None or m.tokens is None:
                    raise Unsupported("the processor reports no image_grid_thw or image_token_id")
                total += m.tokens
            lengths[i] = total
        counted = np.flatnonzero(~unbuildable)
        for i in sorted({int(counted[0]), int(counted[np.argmax(lengths[counted])])} if len(counted) else ()):
            with _torch_threads(1):
                exact = self.verl_prompt_length(dataframe[i])
            if exact != lengths[i]:
                raise Unsupported(f"row {i}: the split count gives {lengths[i]} tokens, verl's processor {exact}")
        self._text_tokens.clear()
        self._texts_tokenized = texts
        return lengths

    def _count_text_tokens(self, messages: tuple, n_images: int) -> int | None:
        """Tokens of the chat-templated ``messages`` with one image pad per image (``None`` when verl's
        message building fails on the row, e.g. more ``<image>`` placeholders than images)."""
        example = {self.prompt_key: [dict(m) for m in messages], self.image_key: [{} for _ in range(n_images)]}
        try:
            built = self._build_messages(example, key=self.prompt_key)
        except (AssertionError, TypeError, ValueError):
            return None
        kwargs = dict(**self.apply_chat_template_kwargs)
        if self.tool_schemas is not None:
            kwargs["tools"] = self.tool_schemas
        text = self.processor.apply_chat_template(built, add_generation_prompt=True, tokenize=False, **kwargs)
        return len(self.processor.tokenizer(text=text, add_special_tokens=False, return_attention_mask=False)["input_ids"])

    def verl_prompt_length(self, example: dict) -> int:
        """Prompt length of one row exactly as verl's filter measures it (decode, resize, processor)."""
        from verl.utils.tokenizer import build_multimodal_processor_inputs

        messages = self._build_messages(copy.deepcopy(example), key=self.prompt_key)
        kwargs = dict(**self.apply_chat_template_kwargs)
        if self.tool_schemas is not None:
            kwargs["tools"] = self.tool_schemas
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kwargs)
        images, videos, audios = self._process_multi_modal_info(messages, self.image_patch_size, self.config)
        if images is None and videos is None and audios is None:
            return len(self.processor.tokenizer(text=text, add_special_tokens=False,
                                                return_attention_mask=False)["input_ids"])
        out = build_multimodal_processor_inputs(self.processor, text=[text], images=images, videos=videos,
                                                audio=audios, mm_processor_kwargs=self.mm_processor_kwargs)
        return len(out["input_ids"][0])

    # -- the frame check ------------------------------------------------------------------------
    def __getitem__(self, item):
        row = super().__getitem__(item)
        return self.align_frame(row)

    def _warn_once(self, key: str, msg: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg)

    def measured_frame(self, image_item: Mapping[str, Any]) -> tuple[int, int] | None:
        """Frame ``(h, w)`` verl produces for this image content item (cached per size and pin)."""
        img = image_item.get("image")
        if not isinstance(img, Image.Image):
            return None
        m = self.measure(img.size, tuple(image_item.get(k) for k in FRAME_KEYS))
        return None if m is None else m.frame

    def measure(self, size_wh: tuple[int, int] | None, keys: tuple) -> ImageMeasure | None:
        """:class:`ImageMeasure` for an image of ``size_wh`` whose dict holds ``keys`` (the values of
        :data:`~verl_perception.length_filter.FRAME_KEYS`), measured once per distinct frame input.

        ``size_wh`` is ignored (may be ``None``) when the dict pins the size: qwen-vl-utils resizes a
        pinned image to the pin whatever its size, so the probe is a small stand-in rather than a
        blank copy of a possibly huge original, and all sizes share one measurement.
        """
        if keys[0] and keys[1]:
            size_wh = (28, 28)
        elif size_wh is None:
            raise ValueError("an unpinned image needs its pixel size to be measured")
        key = (tuple(size_wh), keys)
        found = self._frames.get(key, _MISSING)
        if found is _MISSING:
            item = {k: v for k, v in zip(FRAME_KEYS, keys) if v is not None}
            with _torch_threads(1):
                found = self._frames[key] = measure_image(
                    self.processor, item, size_wh, dataset_cls=type(self), image_patch_size=self.image_patch_size,
                    config=self.config, mm_processor_kwargs=self.mm_processor_kwargs,
                )
        return found

    def align_frame(self, row: dict) -> dict:
        """Check ``row``'s stored frame against the measured one; rescale or refuse on a mismatch."""
        info = row.get("extra_info") or {}
        stored = info.get("input_size")
        if stored is None or self.processor is None:
            return row
        items = [c for m in row.get("raw_prompt") or [] if isinstance(m.get("content"), list)
                 for c in m["content"] if isinstance(c, dict) and c.get("type") == "image"]
        if len(items) != 1:
            self._warn_once("multi", f"rows with {len(items)} images are not frame-checked")
            return row
        where = f"row data_source={row.get('data_source')!r} index={info.get('index')}"
        row_family = family_of(info)
        if self.model_family is not None and row_family is not self.model_family:
            if self.frame_policy == "error":
                raise FrameMismatchError(
                    f"{where}: the parquet was preprocessed for {row_family.name} (factor {row_family.factor}, "
                    f"{row_family.coords} coordinates) but the processor is {self.model_family.name}'s; re-run "
                    f"preprocessing with --model-family {self.model_family.name}, or set "
                    f"+data.perception_frame_mismatch=rescale to rescale the ground truth"
                )
            # The ground truth is in input-frame pixels for every family: the frame check below
            # moves it to the processor's frame; the answers are then read in the processor's convention.
            info = {**info, "model_family": self.model_family.name}
            row["extra_info"] = info
            self._warn_once("family", f"{where}: rows made for {row_family.name} are relabelled "
                                      f"{self.model_family.name} (the processor's family; further rows: silently)")
        measured = self.measured_frame(items[0])
        if measured is None:
            self.frame_stats["unmeasured"] += 1
            self._warn_once("unmeasured", "the processor reports no image_grid_thw: the input frame is not checked")
            return row
        self.frame_stats["checked"] += 1
        stored = (int(stored[0]), int(stored[1]))
        if measured == stored:
            return row
        if self.frame_policy == "error":
            raise FrameMismatchError(
                f"{where}: the ground truth is in the {stored[0]}x{stored[1]} (h x w) frame written at "
                f"preprocessing (min_pixels={info.get('min_pixels')}, max_pixels={info.get('max_pixels')}), but the "
                f"processor feeds the model {measured[0]}x{measured[1]}. Make the processor's pixel bounds "
                f"(the model's preprocessor_config.json or data.mm_processor_kwargs) contain the parquet's, "
                f"re-run preprocessing with --min-pixels/--max-pixels matching the processor, or set "
                f"+data.perception_frame_mismatch=rescale to rescale the ground truth."
            )
        reward_model = dict(row.get("reward_model") or {})
        gt = reward_model.get("ground_truth")
        gt_dict = json.loads(gt) if isinstance(gt, (str, bytes)) else dict(gt or {})
        reward_model["ground_truth"] = json.dumps(rescale_ground_truth(gt_dict, stored, measured),
                                                  ensure_ascii=False, separators=(",", ":"))
        row["reward_model"] = reward_model
        row["extra_info"] = {**info, "input_size": [measured[0], measured[1]]}
        self.frame_stats["rescaled"] += 1
        self._warn_once("rescale", f"{where}: ground truth rescaled from the stored {stored} frame to the "
                                   f"{measured} frame the processor produces (further rows: silently)")
        return row
