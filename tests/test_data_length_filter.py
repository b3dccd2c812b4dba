"""The adapter's overlong-prompt filter (token counts per distinct text and frame) against verl's own.

Every row of the bundled samples of the four tasks (one shared detection instruction, a distinct
grounding expression per row, OCR and counting prompts; images from tiny to 12:1) is counted both
ways, and verl's ``RLHFDataset`` filter must keep exactly the rows the adapter keeps.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from transformers import AutoProcessor, AutoTokenizer
from verl.utils.dataset.rl_dataset import RLHFDataset

from verl_perception import dataset as dataset_mod
from verl_perception.dataset import PerceptionRLHFDataset
from verl_perception.length_filter import FRAME_KEYS, iter_length_keys
from verl_perception.preprocess.samples import convert_samples

SAMPLE = (3136, 64 * 28 * 28)  # the smoke recipe's bounds: small images, quick processor runs
OTHER = (16 * 28 * 28, 32 * 28 * 28)  # a processor that resizes the pinned frames again
TASKS = ("coco", "refcoco", "pixmo_count", "pageocr")


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("length_filter_samples")
    convert_samples(out, min_pixels=SAMPLE[0], max_pixels=SAMPLE[1])
    return [str(out / t / "train.parquet") for t in TASKS]


@functools.cache
def processor_and_tokenizer(processor_dir):
    return AutoProcessor.from_pretrained(processor_dir), AutoTokenizer.from_pretrained(processor_dir)


def make(cls, files, processor_dir, tmp_path, **data_cfg):
    # filter workers None: verl's filter in this process (datasets forks a pool even for 1 worker)
    proc, tok = processor_and_tokenizer(processor_dir)
    cfg = OmegaConf.create({"max_prompt_length": 8192, "filter_overlong_prompts": True, "truncation": "error",
                            "filter_overlong_prompts_workers": None, "cache_dir": str(tmp_path / "cache"), **data_cfg})
    return cls(files, tok, cfg, processor=proc)


def row_ids(ds) -> list[tuple[str, int]]:
    return [(r["data_source"], r["extra_info"]["index"]) for r in ds.dataframe.select_columns(["data_source", "extra_info"])]


@pytest.mark.parametrize("bounds,repin", [(SAMPLE, None), (OTHER, None), (SAMPLE, OTHER)],
                         ids=["same-bounds", "processor-resizes-again", "re-pinned"])
def test_split_count_equals_verls_count_on_every_row(bounds, repin, sample_files, tiny_processor_dir_factory,
                                                      tmp_path):
    extra = {} if repin is None else {"perception_min_pixels": repin[0], "perception_max_pixels": repin[1]}
    ds = make(PerceptionRLHFDataset, sample_files, tiny_processor_dir_factory(*bounds), tmp_path, **extra)
    lengths = ds.prompt_lengths(ds.dataframe)
    exact = [ds.verl_prompt_length(ds.dataframe[i]) for i in range(len(ds.dataframe))]
    assert lengths.tolist() == exact
    stats = ds.length_filter_stats
    assert stats["rows"] == stats["kept"] == len(ds) > 40
    # one detection instruction for all COCO rows, one per grounding expression
    assert 2 < stats["texts_tokenized"] < len(ds)


def test_filter_keeps_exactly_the_rows_verls_filter_keeps(sample_files, tiny_processor_dir_factory, tmp_path):
    proc_dir = tiny_processor_dir_factory(*SAMPLE)
    probe = make(PerceptionRLHFDataset, sample_files, proc_dir, tmp_path, filter_overlong_prompts=False)
    lengths = probe.prompt_lengths(probe.dataframe)
    limit = int(np.sort(lengths)[len(lengths) // 2])  # a row exactly at the limit, rows on both sides
    assert (lengths > limit).any() and (lengths == limit).any()
    ours = make(PerceptionRLHFDataset, sample_files, proc_dir, tmp_path, max_prompt_length=limit)
    verl = make(RLHFDataset, sample_files, proc_dir, tmp_path, max_prompt_length=limit)
    assert row_ids(ours) == row_ids(verl)
    assert len(ours) == int((lengths <= limit).sum()) < len(probe)
    assert ours.length_filter_stats["kept"] == len(ours)


def test_row_verl_cannot_build_is_dropped_as_verl_drops_it(sample_files, tiny_processor_dir_factory, tmp_path):
    """Two <image> placeholders and one image: verl's filter catches the error and drops the row."""
    table = pq.read_table(sample_files[0]).slice(0, 3)
    prompts = table.column("prompt").to_pylist()
    prompts[1][0]["content"] = "<image><image>" + prompts[1][0]["content"].replace("<image>", "")
    bad = tmp_path / "bad.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("prompt"), "prompt",
                                    pa.array(prompts, type=table.schema.field("prompt").type)), bad)
    ds = make(PerceptionRLHFDataset, [str(bad)], tiny_processor_dir_factory(*SAMPLE), tmp_path)
    assert len(ds) == 2 and [i for _, i in row_ids(ds)] == [0, 2]


def test_falls_back_to_verls_filter_when_the_split_count_disagrees(sample_files, tiny_processor_dir_factory,
                                                                   tmp_path, monkeypatch, caplog):
    calls = []
    real = RLHFDataset.maybe_filter_out_long_prompts

    def verl_filter(self, dataframe=None):
        calls.append(len(dataframe))
        return real(self, dataframe)

    monkeypatch.setattr(RLHFDataset, "maybe_filter_out_long_prompts", verl_filter)
    monkeypatch.setattr(PerceptionRLHFDataset, "_count_text_tokens", lambda self, m, n: 1)  # a wrong count
    with caplog.at_level(logging.WARNING, logger="verl_perception.dataset"):
        ds = make(PerceptionRLHFDataset, sample_files[:1], tiny_processor_dir_factory(*SAMPLE), tmp_path)
    assert calls == [len(ds)] and ds.length_filter_stats is None
    assert "verl's processor" in caplog.text and "per-row filter" in caplog.text


def test_text_rows_are_counted_and_image_paths_fall_back_to_verls_filter(tiny_processor_dir_factory, tmp_path,
                                                                         caplog):
    from PIL import Image

    path = tmp_path / "text.parquet"
    rows = [{"prompt": [{"role": "user", "content": "hello there"}], "data_source": "x", "extra_info": {"index": 0}},
            {"prompt": [{"role": "user", "content": "a longer question " * 40}], "data_source": "x",
             "extra_info": {"index": 1}}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    # plain-text rows are counted the split way too (no images: the text count alone)
    ds = make(PerceptionRLHFDataset, [str(path)], tiny_processor_dir_factory(*SAMPLE), tmp_path, max_prompt_length=100)
    assert [i for _, i in row_ids(ds)] == [0] and ds.length_filter_stats["rows"] == 2
    # images given as file paths (verl accepts them) are left to verl's per-row filter
    Image.new("RGB", (64, 48), "white").save(tmp_path / "a.png")
    pq.write_table(pa.Table.from_pylist([{**r, "prompt": [{"role": "user", "content": "<image>" + r["prompt"][0]["content"]}],
                                          "images": [str(tmp_path / "a.png")]} for r in rows]), path)
    with caplog.at_level(logging.WARNING, logger="verl_perception.dataset"):
        ds = make(PerceptionRLHFDataset, [str(path)], tiny_processor_dir_factory(*SAMPLE), tmp_path,
                  max_prompt_length=100)
    assert [i for _, i in row_ids(ds)] == [0] and ds.length_filter_stats is None
    assert "per-row filter" in caplog.text


def test_frames_are_measured_at_construction_not_per_row(sample_files, tiny_processor_dir_factory, tmp_path,
                                                         monkeypatch):
    """With the filter off too, every distinct frame is measured while the dataset is built, so
    __getitem__ (and DataLoader workers forked afterwards) never run the processor."""
    ds = make(PerceptionRLHFDataset, sample_files, tiny_processor_dir_factory(*OTHER), tmp_path,
              filter_overlong_prompts=False)
    pins = {tuple(im.get(k) for k in FRAME_KEYS) for r in ds.dataframe.select_columns(["images"]) for im in r["images"]}
    assert len(ds._frames) == len(pins) > 5

    def fail(*a, **k):
        raise AssertionError("the processor ran in __getitem__")

    monkeypatch.setattr(dataset_mod, "measure_image", fail)
    rows = [ds[i] for i in range(len(ds))]
    assert ds.frame_stats["checked"] == len(rows) and ds.frame_stats["rescaled"] == len(rows)


def test_length_keys_read_pins_without_image_bytes(sample_files, monkeypatch):
    import datasets

    from verl_perception import length_filter

    monkeypatch.setattr(length_filter, "BATCH_ROWS", 7)  # batch boundaries inside the table
    df = datasets.load_dataset("parquet", data_files=sample_files)["train"]
    keys = list(iter_length_keys(df, "prompt", "images"))
    assert len(keys) == len(df)
    for (messages, images, _), row in zip(keys, df):
        assert [dict(m) for m in messages] == row["prompt"]
        (im,) = images
        assert im.size_wh is None  # pinned: the header is not even read
        assert im.keys == tuple(row["images"][0].get(k) for k in FRAME_KEYS)
