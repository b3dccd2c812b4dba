"""verl dataset adapter that keeps the ground truth in the frame the model actually sees.

Preprocessing stores ground truth in the input frame ``extra_info["input_size"]`` and pins that
frame in the image dict (``resized_height``/``resized_width``, honoured by qwen-vl-utils). Two
things can still change the frame at training time: the processor's own pixel bounds (its
``min_pixels``/``max_pixels``, or ``data.mm_processor_kwargs``) resize the fetched image again, and
a recipe may want another pixel budget than the one the parquet was made with. The adapter:

1. optionally re-pins every image to new bounds (``+data.perception_min_pixels=N``,
   ``+data.perception_max_pixels=N``), computed from ``extra_info["orig_size"]`` by
   :mod:`verl_perception.frame`, so the length filter and the rollout see the new frame;
2. measures, per distinct image size, the frame verl's own pipeline produces: the class's
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

Use it with ``data.custom_cls.path=pkg://verl_perception.dataset
data.custom_cls.name=PerceptionRLHFDataset``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

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

logger = logging.getLogger(__name__)

MISMATCH_POLICIES = ("rescale", "error")


class FrameMismatchError(ValueError):
    """The processor produces another frame than the parquet's ground truth, and the policy is ``error``."""


def processor_frame(processor, image_item: Mapping[str, Any], image_size_wh, dataset_cls=RLHFDataset,
                    image_patch_size: int = 14, config=None, mm_processor_kwargs=None) -> tuple[int, int] | None:
    """``(h, w)`` of the frame verl's image path produces for an image of ``image_size_wh`` (PIL order).

    Runs ``dataset_cls._process_multi_modal_info`` (qwen-vl-utils, honouring the dict's
    ``resized_*``/``min_pixels``/``max_pixels`` keys) on a blank image of that size, then the
    processor as verl calls it. Returns ``None`` when the processor reports no ``image_grid_thw``
    (not a Qwen-VL-style processor: the frame cannot be measured).
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
    return gh * patch, gw * patch


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
        self._frames: dict[tuple, tuple[int, int] | None] = {}
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
        size_wh = img.size if isinstance(img, Image.Image) else None
        if size_wh is None:
            return None
        if image_item.get("resized_height") and image_item.get("resized_width"):
            # qwen-vl-utils resizes a pinned image to the pin whatever its size: probe with a small
            # stand-in instead of allocating a blank copy of a possibly huge original
            size_wh = (28, 28)
        key = (size_wh,) + tuple(sorted((k, image_item.get(k)) for k in
                                        ("resized_height", "resized_width", "min_pixels", "max_pixels")))
        if key not in self._frames:
            self._frames[key] = processor_frame(
                self.processor, image_item, size_wh, dataset_cls=type(self), image_patch_size=self.image_patch_size,
                config=self.config, mm_processor_kwargs=self.mm_processor_kwargs,
            )
        return self._frames[key]

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
