"""The dataset adapter through verl's own RLHFDataset machinery, with tiny offline Qwen2.5-VL processors.

The decisive check reconstructs the image the model would see from the processor's
``pixel_values`` and compares the drawn object's extent with the ground truth the reward gets.
"""

from __future__ import annotations

import functools
import io
import json

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image, ImageDraw
from transformers import AutoProcessor, AutoTokenizer

from verl_perception import frame
from verl_perception.dataset import FrameMismatchError, PerceptionRLHFDataset
from verl_perception.preprocess import coco_detection

DEFAULT = (frame.DEFAULT_MIN_PIXELS, frame.DEFAULT_MAX_PIXELS)
SMALL = (16 * 28 * 28, 256 * 28 * 28)
# (width, height, box x1, y1, x2, y2) in the original image: ordinary, tiny (upscaled), wide.
IMAGES = [(1000, 700, 200, 150, 600, 450), (50, 40, 10, 8, 30, 30), (1600, 200, 700, 40, 1500, 160)]


@pytest.fixture(scope="module")
def box_parquet(tmp_path_factory):
    """``make(min_pixels, max_pixels) -> train.parquet`` of black boxes on white images (COCO format)."""
    root = tmp_path_factory.mktemp("boxes")
    img_dir = root / "images"
    img_dir.mkdir()
    images, anns = [], []
    for i, (w, h, x1, y1, x2, y2) in enumerate(IMAGES, start=1):
        img = Image.new("RGB", (w, h), "white")
        ImageDraw.Draw(img).rectangle([x1, y1, x2 - 1, y2 - 1], fill="black")
        img.save(img_dir / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": h, "width": w})
        anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))

    def make(min_pixels, max_pixels):
        out = root / f"p_{min_pixels}_{max_pixels}"
        if not (out / "train.parquet").exists():
            coco_detection.convert(ann, img_dir, out, "train", min_pixels=min_pixels, max_pixels=max_pixels,
                                   progress=False, strict=True)
        return str(out / "train.parquet")

    return make


@functools.cache
def processor_and_tokenizer(processor_dir):
    return AutoProcessor.from_pretrained(processor_dir), AutoTokenizer.from_pretrained(processor_dir)


def load(parquet, processor_dir, tmp_path, **data_cfg):
    proc, tok = processor_and_tokenizer(processor_dir)
    cfg = OmegaConf.create({"max_prompt_length": 8192, "filter_overlong_prompts": False,
                            "cache_dir": str(tmp_path / "cache"), **data_cfg})
    return PerceptionRLHFDataset([parquet], tok, cfg, processor=proc), proc


def model_view(ds, proc, row):
    """The image the model sees for ``row``, rebuilt from pixel_values as ``(h, w)`` grey levels, via the
    rollout's path: the dataset class's multimodal extraction, then the processor with mm_processor_kwargs."""
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    images, _, _ = type(ds)._process_multi_modal_info(row["raw_prompt"], ds.image_patch_size, ds.config)
    text = proc.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=False)
    out = build_multimodal_processor_inputs(proc, text=[text], images=images, mm_processor_kwargs=ds.mm_processor_kwargs)
    _, gh, gw = (int(v) for v in out["image_grid_thw"][0])
    ip = proc.image_processor
    m, ps, tp = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    pv = np.asarray(out["pixel_values"], dtype=np.float32).reshape(gh // m, gw // m, m, m, 3, tp, ps, ps)[:, :, :, :, :, 0]
    img = pv.transpose(4, 0, 2, 5, 1, 3, 6).reshape(3, gh * ps, gw * ps)
    return img.mean(axis=0)


def dark_extent(grey: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(grey < 0.0)  # normalised: white ~ +2, black ~ -1.8
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def check_rows(ds, proc):
    for i in range(len(ds)):
        row = ds[i]
        grey = model_view(ds, proc, row)
        info = row["extra_info"]
        assert list(grey.shape) == list(info["input_size"]), "ground-truth frame differs from the model's frame"
        (box,) = json.loads(row["reward_model"]["ground_truth"])["boxes"]
        # bicubic resizing blurs an edge by at most about one pixel either side
        np.testing.assert_allclose(dark_extent(grey), box, atol=1.6)


@pytest.mark.parametrize("bounds", [DEFAULT, SMALL])
def test_matching_processor_keeps_the_stored_frame(bounds, box_parquet, tiny_processor_dir_factory, tmp_path):
    ds, proc = load(box_parquet(*bounds), tiny_processor_dir_factory(*bounds), tmp_path)
    check_rows(ds, proc)
    assert ds.frame_stats == {"checked": len(IMAGES), "rescaled": 0, "unmeasured": 0}


@pytest.mark.parametrize("parquet_bounds,processor_bounds", [(DEFAULT, SMALL), (SMALL, (1024 * 28 * 28, 1280 * 28 * 28))])
def test_other_processor_bounds_rescale_the_ground_truth(parquet_bounds, processor_bounds, box_parquet,
                                                         tiny_processor_dir_factory, tmp_path):
    """A user who changes the processor's max_pixels (or min_pixels) still gets correct rewards."""
    ds, proc = load(box_parquet(*parquet_bounds), tiny_processor_dir_factory(*processor_bounds), tmp_path)
    check_rows(ds, proc)
    assert ds.frame_stats["rescaled"] >= 1


@pytest.mark.parametrize("kwargs,rescaled", [
    ({"min_pixels": SMALL[0], "max_pixels": SMALL[1]}, True),
    # transformers 5.x's Qwen2-VL image processor ignores max_pixels given without min_pixels:
    # the adapter measures instead of assuming, so it neither rescales nor breaks here
    ({"max_pixels": SMALL[1]}, False),
])
def test_mm_processor_kwargs_are_honoured(kwargs, rescaled, box_parquet, tiny_processor_dir_factory, tmp_path):
    ds, proc = load(box_parquet(*DEFAULT), tiny_processor_dir_factory(*DEFAULT), tmp_path, mm_processor_kwargs=kwargs)
    check_rows(ds, proc)
    assert (ds.frame_stats["rescaled"] >= 1) == rescaled


def test_mismatch_error_policy_names_the_settings(box_parquet, tiny_processor_dir_factory, tmp_path):
    ds, _ = load(box_parquet(*DEFAULT), tiny_processor_dir_factory(*SMALL), tmp_path, perception_frame_mismatch="error")
    with pytest.raises(FrameMismatchError, match="max_pixels") as e:
        ds[0]
    assert "perception_frame_mismatch" in str(e.value) and "--max-pixels" in str(e.value)
    with pytest.raises(ValueError, match="perception_frame_mismatch"):
        load(box_parquet(*DEFAULT), tiny_processor_dir_factory(*DEFAULT), tmp_path, perception_frame_mismatch="bogus")


def test_repinning_to_new_bounds(box_parquet, tiny_processor_dir_factory, tmp_path):
    """+data.perception_max_pixels re-pins the images: the model sees the new frame, the reward follows."""
    ds, proc = load(box_parquet(*DEFAULT), tiny_processor_dir_factory(*DEFAULT), tmp_path,
                    perception_min_pixels=SMALL[0], perception_max_pixels=SMALL[1])
    check_rows(ds, proc)
    row = ds[0]
    assert tuple(row["extra_info"]["input_size"]) == frame.input_size(*row["extra_info"]["orig_size"], *SMALL)


def test_adapter_resolves_through_verl_custom_cls(box_parquet, tiny_processor_dir_factory, tmp_path):
    from verl.utils.dataset.rl_dataset import collate_fn, get_dataset_class

    data_cfg = OmegaConf.create({"custom_cls": {"path": "pkg://verl_perception.dataset", "name": "PerceptionRLHFDataset"}})
    assert get_dataset_class(data_cfg) is PerceptionRLHFDataset
    ds, _ = load(box_parquet(*DEFAULT), tiny_processor_dir_factory(*DEFAULT), tmp_path)
    batch = collate_fn([ds[i] for i in range(len(ds))])
    assert batch["dummy_tensor"].shape[0] == len(IMAGES)
    assert [json.loads(g["ground_truth"])["boxes"][0] for g in batch["reward_model"]]


def test_repin_reaches_the_messages_verl_length_filter_reads(box_parquet, tiny_processor_dir_factory, tmp_path):
    """verl's overlong-prompt filter builds its messages with _build_messages: re-pinning happens there."""
    ds, _ = load(box_parquet(*DEFAULT), tiny_processor_dir_factory(*DEFAULT), tmp_path,
                 perception_max_pixels=SMALL[1])
    example = ds.dataframe[0]
    (item,) = [c for c in ds._build_messages(example, "prompt")[0]["content"] if c["type"] == "image"]
    want = frame.input_size(*example["extra_info"]["orig_size"], frame.DEFAULT_MIN_PIXELS, SMALL[1])
    assert (item["resized_height"], item["resized_width"]) == want != tuple(example["extra_info"]["input_size"])


def test_bytes_image_round_trip_matches_file(box_parquet):
    import pyarrow.parquet as pq

    row = pq.read_table(box_parquet(*DEFAULT)).to_pylist()[1]
    with Image.open(io.BytesIO(row["images"][0]["bytes"])) as im:
        assert im.size == (50, 40)
