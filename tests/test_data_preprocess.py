"""Preprocessing CLIs: bundled samples, the row schema, ground truth in the input frame, bad input."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from verl_perception import frame
from verl_perception.preprocess import coco_detection, pageocr, pixmo_count, refcoco
from verl_perception.preprocess.rows import SCHEMA
from verl_perception.preprocess.runner import PreprocessError
from verl_perception.preprocess.samples import convert_samples, samples_dir
from verl_perception.rewards import compute_score

ROOT = Path(__file__).resolve().parents[1]
KW = {"min_pixels": frame.DEFAULT_MIN_PIXELS, "max_pixels": frame.DEFAULT_MAX_PIXELS, "progress": False}


def rows_of(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def sample_parquet(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("samples_parquet")
    convert_samples(out)
    return out


# --------------------------------------------------------------------------- bundled samples
def test_samples_are_small_and_complete():
    src = samples_dir()
    total = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    assert total < 5_000_000
    assert (src / "refcoco" / "refcoco" / "refs(unc).p").is_file()
    assert (src / "pixmo_count" / "data" / "validation-00000-of-00001.parquet").is_file()


def test_make_samples_is_deterministic(tmp_path):
    from verl_perception.preprocess import make_samples

    make_samples.main(["--out", str(tmp_path / "a")])
    make_samples.main(["--out", str(tmp_path / "b")])
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # The bundled annotations are what the script makes (image bytes depend on the Pillow build's
    # JPEG/PNG encoders and fonts, so only encoder-independent files are compared to the bundle).
    for f in ("coco/annotations/instances_train.json", "coco/annotations/instances_val.json",
              "refcoco/refcoco/instances.json", "refcoco/refcoco/refs(unc).p"):
        assert (samples_dir() / f).read_bytes() == (tmp_path / "a" / f).read_bytes(), f


def test_samples_cli_writes_all_tasks(tmp_path):
    out = tmp_path / "p"
    res = subprocess.run([sys.executable, "-m", "verl_perception.preprocess.samples", "--output-dir", str(out),
                          "--max-pixels", str(256 * 28 * 28)], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for task in ("coco", "refcoco", "pixmo_count", "pageocr"):
        for split in ("train", "val"):
            rows = rows_of(out / task / f"{split}.parquet")
            assert rows, (task, split)
            assert all(r["extra_info"]["max_pixels"] == 256 * 28 * 28 for r in rows)
            assert all(np.prod(r["extra_info"]["input_size"]) <= 256 * 28 * 28 for r in rows)


def test_sample_rows_follow_verl_schema_and_contract(sample_parquet):
    expected = {"coco": "detection", "refcoco": "grounding", "pixmo_count": "counting", "pageocr": "ocr"}
    for task_dir, task in expected.items():
        for split in ("train", "val"):
            path = sample_parquet / task_dir / f"{split}.parquet"
            assert pq.read_schema(path).equals(SCHEMA, check_metadata=False)
            rows = rows_of(path)
            for i, r in enumerate(rows):
                assert r["data_source"] == task_dir
                assert r["ability"] == task and r["reward_model"]["style"] == "rule"
                (msg,) = r["prompt"]
                assert msg["role"] == "user" and msg["content"].startswith("<image>")
                assert msg["content"].count("<image>") == 1
                info = r["extra_info"]
                assert info["task"] == task and info["split"] == split and info["index"] == i
                (img,) = r["images"]
                with Image.open(io.BytesIO(img["bytes"])) as im:
                    assert [im.height, im.width] == info["orig_size"]
                assert [img["resized_height"], img["resized_width"]] == info["input_size"]
                assert tuple(info["input_size"]) == frame.input_size(*info["orig_size"])
                # a perfect answer built from the ground truth gets the top reward of its task
                gt = json.loads(r["reward_model"]["ground_truth"])
                if task == "detection":
                    answer = json.dumps([{"bbox_2d": b, "label": lab} for b, lab in zip(gt["boxes"], gt["labels"])])
                elif task == "grounding":
                    answer = json.dumps({"bbox_2d": gt["bbox"], "label": "x"})
                elif task == "counting":
                    answer = json.dumps([{"point_2d": p, "label": "x"} for p in gt["points"]])
                else:
                    answer = gt["text"]
                score = compute_score(r["data_source"], answer, r["reward_model"]["ground_truth"], info)
                assert score["format"] == 1
                if task == "grounding":
                    assert score["iou"] == pytest.approx(1.0)
                elif task == "counting":
                    assert score["count_exact"] == 1
                elif task == "ocr":
                    assert score["edit_sim"] == pytest.approx(1.0)
                elif gt["boxes"]:
                    assert score["f1"] == pytest.approx(1.0)


def test_detection_prompt_lists_the_80_coco_names(sample_parquet):
    from verl_perception.coco import COCO_NAMES

    content = rows_of(sample_parquet / "coco" / "val.parquet")[0]["prompt"][0]["content"]
    assert content.endswith("The category set includes " + ", ".join(COCO_NAMES) + ".")


def test_coco_ground_truth_is_the_annotation_in_the_input_frame(sample_parquet):
    ann = json.loads((samples_dir() / "coco" / "annotations" / "instances_train.json").read_text())
    names = {c["id"]: c["name"] for c in ann["categories"]}
    by_image = {}
    for a in ann["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    rows = rows_of(sample_parquet / "coco" / "train.parquet")
    assert len(rows) == len(ann["images"])
    crowd_seen = False
    for r in rows:
        info = r["extra_info"]
        anns = [a for a in by_image[info["image_id"]] if not a["iscrowd"]]
        crowd_seen |= len(anns) < len(by_image[info["image_id"]])
        gt = json.loads(r["reward_model"]["ground_truth"])
        want = frame.to_input(frame.xywh_to_xyxy([a["bbox"] for a in anns]), info["orig_size"], info["input_size"])
        np.testing.assert_allclose(gt["boxes"], want, atol=0.006)
        assert gt["labels"] == [names[a["category_id"]] for a in anns]
        assert info["gt_category_ids"] == [a["category_id"] for a in anns]
        assert dict(zip(info["category_names"], info["category_ids"]))["toothbrush"] == 90
    assert crowd_seen


def test_coco_val_keeps_images_without_annotations(sample_parquet):
    rows = rows_of(sample_parquet / "coco" / "val.parquet")
    empty = [r for r in rows if json.loads(r["reward_model"]["ground_truth"])["boxes"] == []]
    assert len(empty) == 1


def test_refcoco_one_row_per_sentence(sample_parquet):
    with open(samples_dir() / "refcoco" / "refcoco" / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)
    val = [(r, s) for r in refs if r["split"] == "val" for s in r["sentences"]]
    rows = rows_of(sample_parquet / "refcoco" / "val.parquet")
    assert [(r["extra_info"]["ref_id"], r["extra_info"]["sent_id"]) for r in rows] == [
        (ref["ref_id"], s["sent_id"]) for ref, s in val]
    for row, (_, s) in zip(rows, val):
        assert row["extra_info"]["expression"] == s["sent"]
        assert f"Output the bounding box of the {s['sent']} in the image" in row["prompt"][0]["content"]


def test_pixmo_points_are_pixels_mapped_to_the_input_frame(sample_parquet):
    raw = pq.read_table(samples_dir() / "pixmo_count" / "data" / "train-00000-of-00001.parquet").to_pylist()
    rows = rows_of(sample_parquet / "pixmo_count" / "train.parquet")
    for r, rec in zip(rows, raw):
        info = r["extra_info"]
        gt = json.loads(r["reward_model"]["ground_truth"])
        pts = np.array([rec["points"]["x"], rec["points"]["y"]]).T
        np.testing.assert_allclose(gt["points"], frame.to_input(pts, info["orig_size"], info["input_size"]), atol=0.006)
        assert gt["count"] == rec["count"] == len(gt["points"]) == info["count"]
        assert info["image_sha256"] == rec["image_sha256"] and info["label"] == rec["label"]


# --------------------------------------------------------------------------- bad input (COCO)
def _jpeg(w, h, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def bad_coco(tmp_path):
    """A COCO split holding one clean image and one record per failure mode."""
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images, anns = [], []

    def add(i, file_name, size, boxes, data=None, cats=None):
        h, w = size
        images.append({"id": i, "file_name": file_name, "height": h, "width": w})
        if data is not None:
            (img_dir / file_name).write_bytes(data)
        for k, b in enumerate(boxes):
            anns.append({"id": i * 100 + k, "image_id": i, "category_id": (cats or [1] * len(boxes))[k],
                         "bbox": b, "iscrowd": 0, "area": 1.0})

    add(1, "ok.jpg", (60, 80), [[10, 10, 20, 20], [200, 200, 5, 5], [30, 30, 0, 10]], _jpeg(80, 60))  # 2 bad boxes
    add(2, "missing.jpg", (60, 80), [[1, 1, 5, 5]])
    add(3, "corrupt.jpg", (60, 80), [[1, 1, 5, 5]], _jpeg(80, 60)[:200])
    add(4, "wrongsize.jpg", (61, 80), [[1, 1, 5, 5]], _jpeg(80, 60))
    add(5, "unknowncat.jpg", (60, 80), [[1, 1, 5, 5]], _jpeg(80, 60), cats=[999])
    add(6, "allbad.jpg", (60, 80), [[500, 500, 5, 5]], _jpeg(80, 60))
    add(7, "thin.jpg", (2, 900), [[1, 0, 5, 1]], _jpeg(900, 2))
    add(8, "noanns.jpg", (60, 80), [], _jpeg(80, 60))
    doc = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(doc))
    return ann_file, img_dir


def test_bad_records_are_skipped_with_named_reasons(bad_coco, tmp_path):
    ann_file, img_dir = bad_coco
    s = coco_detection.convert(ann_file, img_dir, tmp_path / "out", "train", **KW)
    assert s.rows_written == 1
    assert dict(s.skipped) == {"missing_image": 1, "corrupt_image": 1, "size_mismatch": 1, "unknown_category": 1,
                               "no_valid_boxes": 1, "extreme_aspect_ratio": 1, "no_annotations": 1}
    assert dict(s.dropped) == {"box_outside_image": 1, "box_zero_area": 1}
    (row,) = rows_of(tmp_path / "out" / "train.parquet")
    gt = json.loads(row["reward_model"]["ground_truth"])
    assert gt["labels"] == ["person"] and len(gt["boxes"]) == 1
    text = s.format()
    assert "missing_image: 1" in text and "box_zero_area: 1" in text


def test_val_keeps_images_without_annotations(bad_coco, tmp_path):
    ann_file, img_dir = bad_coco
    s = coco_detection.convert(ann_file, img_dir, tmp_path / "out", "val", **KW)
    # val keeps every decodable image, even one whose only box is unusable (dropped, counted)
    assert "no_annotations" not in s.skipped and "no_valid_boxes" not in s.skipped and s.rows_written == 3
    assert s.dropped["box_outside_image"] == 2


def test_strict_fails_clearly_and_publishes_nothing(bad_coco, tmp_path):
    ann_file, img_dir = bad_coco
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.parquet").write_bytes(b"previous complete file")
    with pytest.raises(PreprocessError, match="--strict"):
        coco_detection.convert(ann_file, img_dir, out, "train", strict=True, **KW)
    assert (out / "train.parquet").read_bytes() == b"previous complete file"
    assert [p.name for p in out.iterdir()] == ["train.parquet"]  # no temporary file left behind


def test_cli_summary_and_strict_exit(bad_coco, tmp_path):
    ann_file, img_dir = bad_coco
    cmd = [sys.executable, str(ROOT / "data_preprocess" / "coco_detection.py"), "--ann-file", str(ann_file),
           "--image-dir", str(img_dir), "--output-dir", str(tmp_path / "o"), "--split", "train", "--workers", "2"]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote 1 rows" in res.stderr and "corrupt_image: 1" in res.stderr
    res = subprocess.run(cmd + ["--strict"], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.strip().splitlines()[-1].startswith("error: PreprocessError: --strict")
    assert len(rows_of(tmp_path / "o" / "train.parquet")) == 1  # the earlier run's complete file stays
    res = subprocess.run(cmd + ["--max-pixels", "100"], check=False, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "max_pixels" in res.stderr


def test_parallel_output_equals_serial(tmp_path):
    src = samples_dir() / "coco"
    a = coco_detection.convert(src / "annotations" / "instances_train.json", src / "train", tmp_path / "a", "train",
                               workers=1, row_group_rows=5, **KW)
    b = coco_detection.convert(src / "annotations" / "instances_train.json", src / "train", tmp_path / "b", "train",
                               workers=2, **KW)
    assert a.rows_written == b.rows_written > 0
    assert pq.ParquetFile(tmp_path / "a" / "train.parquet").metadata.num_row_groups == -(-a.rows_written // 5)
    assert rows_of(tmp_path / "a" / "train.parquet") == rows_of(tmp_path / "b" / "train.parquet")


def test_every_cli_has_help():
    for name in ("coco_detection", "refcoco", "pixmo_count", "pageocr"):
        res = subprocess.run([sys.executable, str(ROOT / "data_preprocess" / f"{name}.py"), "--help"],
                             check=False, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "--max-pixels" in res.stdout and "--workers" in res.stdout


# --------------------------------------------------------------------------- other families
def test_refcoco_bad_refs(tmp_path):
    img_dir = tmp_path / "train2014"
    img_dir.mkdir()
    (img_dir / "a.jpg").write_bytes(_jpeg(80, 60))
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80}],
           "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]},
                           {"id": 11, "image_id": 1, "category_id": 1, "bbox": [90, 5, 10, 10]}],
           "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    refs = [
        {"ref_id": 0, "ann_id": 10, "image_id": 1, "split": "val", "category_id": 1,
         "sentences": [{"sent_id": 0, "sent": "man left"}, {"sent_id": 1, "sent": "  "}]},
        {"ref_id": 1, "ann_id": 11, "image_id": 1, "split": "val", "sentences": [{"sent_id": 2, "sent": "off"}]},
        {"ref_id": 2, "ann_id": 99, "image_id": 1, "split": "val", "sentences": [{"sent_id": 3, "sent": "gone"}]},
        {"ref_id": 3, "image_id": 1, "split": "val", "sentences": []},
        {"ref_id": 4, "ann_id": 10, "image_id": 1, "split": "train", "sentences": [{"sent_id": 4, "sent": "x"}]},
    ]
    with open(tmp_path / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    s = refcoco.convert(tmp_path / "refs(unc).p", tmp_path / "instances.json", img_dir, tmp_path / "o", "refcoco",
                        "val", **KW)
    assert s.rows_written == 1
    assert dict(s.skipped) == {"empty_expression": 1, "box_outside_image": 1, "missing_annotation": 1,
                               "missing_fields": 1}
    (row,) = rows_of(tmp_path / "o" / "val.parquet")
    inp = row["extra_info"]["input_size"]
    assert json.loads(row["reward_model"]["ground_truth"])["bbox"] == pytest.approx(
        frame.to_input([5, 5, 15, 15], (60, 80), inp).round(2).tolist())
    with pytest.raises(ValueError, match="splits"):
        refcoco.convert(tmp_path / "refs(unc).p", tmp_path / "instances.json", img_dir, tmp_path / "o", "refcocog",
                        "testA", **KW)


def _png(w, h) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (0, 0, 255)).save(buf, format="PNG")
    return buf.getvalue()


def test_pixmo_jsonl_conventions_and_bad_records(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    data = _png(200, 100)
    sha = hashlib.sha256(data).hexdigest()
    (img_dir / f"{sha}.png").write_bytes(data)
    other = _png(201, 100)
    (img_dir / ("0" * 64)).write_bytes(other)  # wrong content for its name
    recs = [
        {"image_url": "u", "image_sha256": sha, "count": 2, "points": [{"x": 50, "y": 50}, {"x": 150, "y": 25}],
         "label": "dots"},
        {"image_url": "u", "image_sha256": sha, "count": 3, "points": [{"x": 50, "y": 50}], "label": "dots"},
        {"image_url": "u", "image_sha256": sha, "count": 1, "points": [{"x": 500, "y": 50}], "label": "dots"},
        {"image_url": "u", "image_sha256": "0" * 64, "count": 1, "points": [{"x": 5, "y": 5}], "label": "dots"},
        {"image_url": "u", "image_sha256": "f" * 64, "count": 1, "points": [{"x": 5, "y": 5}], "label": "dots"},
        {"image_url": "u", "image_sha256": sha, "count": 2, "points": None, "label": "dots"},
        {"image_url": "u", "count": 2, "label": "dots"},
    ]
    ann = tmp_path / "train.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in recs) + "\n{not json\n")
    s = pixmo_count.convert(ann, img_dir, tmp_path / "o", "train", **KW)
    assert s.rows_written == 1
    assert dict(s.skipped) == {"count_mismatch": 1, "point_outside_image": 1, "sha256_mismatch": 1,
                               "missing_image": 1, "missing_points": 1, "missing_fields": 1, "bad_json": 1}
    (row,) = rows_of(tmp_path / "o" / "train.parquet")
    inp = row["extra_info"]["input_size"]
    pix = json.loads(row["reward_model"]["ground_truth"])["points"]
    np.testing.assert_allclose(pix, frame.to_input([[50, 50], [150, 25]], (100, 200), inp), atol=0.006)
    # the percent flag reads the same numbers as 0..100 of the image
    ann.write_text(json.dumps({**recs[0], "points": [{"x": 25, "y": 50}, {"x": 75, "y": 25}]}) + "\n")
    s = pixmo_count.convert(ann, img_dir, tmp_path / "p", "train", points_convention="percent", **KW)
    row = rows_of(tmp_path / "p" / "train.parquet")[0]
    np.testing.assert_allclose(json.loads(row["reward_model"]["ground_truth"])["points"], pix, atol=0.006)
    # eval splits keep images whose points are missing, with the count
    ann.write_text(json.dumps(recs[5]) + "\n")
    s = pixmo_count.convert(ann, img_dir, tmp_path / "v", "val", **KW)
    gt = json.loads(rows_of(tmp_path / "v" / "val.parquet")[0]["reward_model"]["ground_truth"])
    assert gt == {"points": [], "count": 2}


def test_pixmo_download_verifies_sha256(tmp_path):
    served = tmp_path / "web"
    served.mkdir()
    good, bad = _png(30, 30), _png(31, 30)
    (served / "good.png").write_bytes(good)
    (served / "bad.png").write_bytes(bad)
    sha_good, sha_claimed = hashlib.sha256(good).hexdigest(), "a" * 64

    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        recs = [{"image_url": f"{base}/good.png", "image_sha256": sha_good, "count": 1,
                 "points": [{"x": 3, "y": 3}], "label": "x"},
                {"image_url": f"{base}/bad.png", "image_sha256": sha_claimed, "count": 1,
                 "points": [{"x": 3, "y": 3}], "label": "x"},
                {"image_url": f"{base}/nothere.png", "image_sha256": "b" * 64, "count": 1,
                 "points": [{"x": 3, "y": 3}], "label": "x"},
                {"image_url": (served / "good.png").as_uri(), "image_sha256": sha_good, "count": 1,
                 "points": [{"x": 3, "y": 3}], "label": "x"}]
        ann = tmp_path / "a.jsonl"
        ann.write_text("\n".join(json.dumps(r) for r in recs))
        img_dir = tmp_path / "imgs"
        out = pixmo_count.download(ann, img_dir, threads=2, progress=False)
        assert dict(out) == {"downloaded": 1, "sha256_mismatch": 1, "download_failed": 1}
        assert sorted(p.name for p in img_dir.iterdir()) == [f"{sha_good}.png"]
        assert pixmo_count.download_one((served / "good.png").as_uri(), sha_good, img_dir) == "exists"
    finally:
        server.shutdown()


def test_pageocr_json_list_and_bad_records(tmp_path):
    (tmp_path / "p.png").write_bytes(_png(300, 400))
    recs = [{"image": "p.png", "text": "Line one\nLine two é"}, {"image": "p.png", "text": "  "},
            {"image": "nope.png", "text": "x"}, {"text": "x"}, "not an object"]
    (tmp_path / "a.json").write_text(json.dumps(recs))
    s = pageocr.convert(tmp_path / "a.json", tmp_path, tmp_path / "o", "val", **KW)
    assert s.rows_written == 1
    assert dict(s.skipped) == {"empty_text": 1, "missing_image": 1, "missing_fields": 1, "bad_json": 1}
    row = rows_of(tmp_path / "o" / "val.parquet")[0]
    assert json.loads(row["reward_model"]["ground_truth"]) == {"text": "Line one\nLine two é"}
    # the Fox benchmark's page-OCR layout (LLaVA conversations) is read as it is
    fox = [{"image": "p.png", "conversations": [{"from": "human", "value": "<image>\nOCR:"},
                                                {"from": "gpt", "value": "Page text"}]},
           {"image": "p.png", "conversations": [{"from": "human", "value": "<image>\nOCR:"}]}]
    (tmp_path / "fox.json").write_text(json.dumps(fox))
    s = pageocr.convert(tmp_path / "fox.json", tmp_path, tmp_path / "f", "val", **KW)
    assert s.rows_written == 1 and dict(s.skipped) == {"missing_fields": 1}
    row = rows_of(tmp_path / "f" / "val.parquet")[0]
    assert json.loads(row["reward_model"]["ground_truth"]) == {"text": "Page text"}


def test_mixed_task_files_concatenate_in_verl(sample_parquet):
    """One schema for all tasks: verl's RLHFDataset concatenates files of different tasks."""
    import datasets

    parts = [datasets.load_dataset("parquet", data_files=str(sample_parquet / t / "val.parquet"))["train"]
             for t in ("coco", "refcoco", "pixmo_count", "pageocr")]
    merged = datasets.concatenate_datasets(parts)
    assert len(merged) == sum(len(p) for p in parts)
    assert pa.types.is_struct(merged.data.schema.field("extra_info").type)


def test_coco_index_same_with_and_without_ijson(monkeypatch):
    from verl_perception.preprocess import coco_json

    ann = samples_dir() / "coco" / "annotations" / "instances_train.json"
    streamed = coco_json.load_coco(ann)
    monkeypatch.setattr(coco_json, "ijson", None)
    loaded = coco_json.load_coco(ann)
    assert streamed.images == loaded.images and streamed.categories == loaded.categories
    for name in ("ann_ids", "ann_image_ids", "ann_category_ids", "ann_boxes", "ann_crowd"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(loaded, name))
    assert len(loaded.ann_ids) == len(json.loads(ann.read_text())["annotations"])
