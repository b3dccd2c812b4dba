"""Both model families end to end on CPU, with tiny offline models of each.

preprocess (bundled samples, ``--model-family``) -> the dataset adapter through verl's RLHFDataset
with the family's processor -> greedy generation (transformers) -> rewards -> benchmark evaluation.
The reference answers (ground truth written in the family's convention) must score the maximum and
evaluate perfectly after the map back to the original image; a parquet made for the other family
is refused or rescaled and relabelled by the adapter.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from omegaconf import OmegaConf
from transformers import AutoProcessor, AutoTokenizer

from verl_perception import frame
from verl_perception.dataset import FrameMismatchError, PerceptionRLHFDataset
from verl_perception.demo import MAX_REWARD, reference_answer
from verl_perception.evaluate import evaluate_benchmark
from verl_perception.preprocess.samples import convert_samples
from verl_perception.rewards import compute_score
from verl_perception.tasks import resolve_task

FAMILIES = ("qwen2_5_vl", "qwen3_vl")
BENCHMARKS = ("coco", "refcoco", "pixmo_count")
HEADLINE = {"coco": ("AP", 1.0), "refcoco": ("acc@0.5", 1.0), "pixmo_count": ("accuracy", 1.0)}
ROWS = 3


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory):
    """``make(family) -> dir`` of the bundled samples preprocessed for ``family`` (its default bounds)."""
    root = tmp_path_factory.mktemp("family_samples")

    @functools.cache
    def make(family: str) -> str:
        out = root / family
        convert_samples(out, model_family=family, tasks=BENCHMARKS)
        return str(out)

    return make


@pytest.fixture(scope="module")
def models(request):
    """Family -> tiny model directory (built lazily, once per session)."""
    fixture = {"qwen2_5_vl": "tiny_model_dir", "qwen3_vl": "tiny_qwen3_model_dir"}
    return lambda family: request.getfixturevalue(fixture[family])


def adapter(parquet: str, model_dir: str, tmp_path, **data_cfg) -> PerceptionRLHFDataset:
    proc, tok = AutoProcessor.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    cfg = OmegaConf.create({"max_prompt_length": 8192, "filter_overlong_prompts": False,
                            "cache_dir": str(tmp_path / "cache"), **data_cfg})  # fmt: skip
    return PerceptionRLHFDataset([parquet], tok, cfg, processor=proc)


@pytest.mark.parametrize("family", FAMILIES)
def test_family_end_to_end(family, sample_data, models, tmp_path):
    from verl_perception.generate import HFGenerator, generate_file

    spec = frame.get_family(family)
    data_dir, model_dir = sample_data(family), models(family)
    generator = HFGenerator(model_dir, device="cpu", dtype="float32", forbid_vision_tokens=True)
    for bench in BENCHMARKS:
        val = f"{data_dir}/{bench}/val.parquet"
        # the adapter, through verl's RLHFDataset, with the family's processor: frames agree, nothing rescaled
        ds = adapter(val, model_dir, tmp_path)
        rows = [ds[i] for i in range(ROWS)]
        assert ds.frame_stats == {"checked": ROWS, "rescaled": 0, "unmeasured": 0}, bench
        for row in rows:
            info = row["extra_info"]
            assert info["model_family"] == family
            assert info["input_size"][0] % spec.factor == 0 and info["input_size"][1] % spec.factor == 0
            assert spec.min_pixels <= info["input_size"][0] * info["input_size"][1] <= spec.max_pixels

        # generation with the tiny random model, then the training reward on its answers
        responses = tmp_path / f"{bench}_responses.jsonl"
        gen = generate_file(model_dir, val, responses, limit=ROWS, max_new_tokens=8, generator=generator,
                            progress=False)  # fmt: skip
        assert gen["rows"] == ROWS
        answers = [json.loads(line)["response"] for line in open(responses)]
        assert not any("<|image_pad|>" in a for a in answers)
        refs = tmp_path / f"{bench}_reference.jsonl"
        with open(refs, "w") as f:
            for i, (row, answer) in enumerate(zip(rows, answers)):
                gt, info = row["reward_model"]["ground_truth"], row["extra_info"]
                score = compute_score(row["data_source"], answer, gt, info)
                assert np.isfinite(score["score"]) and score["format"] in (0.0, 1.0)
                ref = reference_answer(resolve_task(row["data_source"], info), json.loads(gt), info)
                assert compute_score(row["data_source"], ref, gt, info)["score"] == pytest.approx(MAX_REWARD[bench])
                f.write(json.dumps({"row": i, "index": info["index"], "response": ref}) + "\n")

        # evaluation: the model's answers run through; the reference answers are perfect in the original image
        ev = evaluate_benchmark(bench, val, responses, tmp_path / f"{bench}_eval", n_overlays=1, limit=ROWS)
        assert ev["n_rows"] == ROWS and ev["missing_responses"] == 0
        ref_ev = evaluate_benchmark(bench, val, refs, tmp_path / f"{bench}_ref_eval", n_overlays=0, limit=ROWS)
        key, best = HEADLINE[bench]
        assert ref_ev["metrics"][key] == pytest.approx(best, abs=1e-9), (family, bench)
    if family == "qwen3_vl":  # the answers really are relative: a reference box is not the pixel box
        row = adapter(f"{data_dir}/refcoco/val.parquet", model_dir, tmp_path)[0]
        box = json.loads(reference_answer("grounding", json.loads(row["reward_model"]["ground_truth"]),
                                          row["extra_info"]))[0]["bbox_2d"]  # fmt: skip
        h, w = row["extra_info"]["input_size"]
        np.testing.assert_allclose(box, np.array(json.loads(row["reward_model"]["ground_truth"])["bbox"])
                                   * [1000 / w, 1000 / h, 1000 / w, 1000 / h])  # fmt: skip


def test_parquet_of_the_other_family_is_refused_or_rescaled(sample_data, tiny_processor_dir_factory, tmp_path):
    """A Qwen2.5-VL parquet read with a Qwen3-VL processor: ``error`` names --model-family; ``rescale``
    moves the ground truth into the Qwen3-VL frame and relabels the row, so a Qwen3-VL answer (0..1000)
    of the object scores the maximum."""
    q3_proc = tiny_processor_dir_factory(family="qwen3_vl")
    old = f"{sample_data('qwen2_5_vl')}/refcoco/val.parquet"
    with pytest.raises(FrameMismatchError, match="--model-family qwen3_vl"):
        adapter(old, q3_proc, tmp_path, perception_frame_mismatch="error")[0]
    ds = adapter(old, q3_proc, tmp_path)
    native = adapter(f"{sample_data('qwen3_vl')}/refcoco/val.parquet", q3_proc, tmp_path)
    for i in range(ROWS):
        row, want = ds[i], native[i]
        info = row["extra_info"]
        assert info["model_family"] == "qwen3_vl"
        assert info["input_size"] == want["extra_info"]["input_size"]
        got_box = json.loads(row["reward_model"]["ground_truth"])["bbox"]
        want_box = json.loads(want["reward_model"]["ground_truth"])["bbox"]
        np.testing.assert_allclose(got_box, want_box, atol=0.05)  # two roundings to 0.01 px, rescaled
        gt = row["reward_model"]["ground_truth"]
        ref = reference_answer("grounding", json.loads(gt), info)
        assert compute_score(row["data_source"], ref, gt, info)["score"] == pytest.approx(2.0)
    assert ds.frame_stats["rescaled"] >= 1


def test_demo_runs_with_the_tiny_qwen3(tmp_path, capsys):
    """``verl-perception demo --model-family qwen3_vl``: tiny Qwen3-VL, parquet for it, perfect references."""
    from verl_perception import cli

    out = tmp_path / "demo"
    rc = cli.main(["demo", "--model-family", "qwen3_vl", "--out", str(out), "--tasks", "refcoco", "pixmo_count",
                   "--limit", "2", "--max-new-tokens", "4", "--no-progress"])  # fmt: skip
    assert rc == 0
    assert json.loads((out / "tiny_model" / "config.json").read_text())["model_type"] == "qwen3_vl"
    summary = json.loads((out / "summary.json").read_text())
    for task in ("refcoco", "pixmo_count"):
        assert summary[task]["reference_reward"]["mean_score"] == pytest.approx(MAX_REWARD[task], abs=1e-9)
        key, best = HEADLINE[task]
        assert summary[task]["reference_metrics"][key] == pytest.approx(best, abs=1e-9)
    assert "tiny random Qwen3-VL" in (out / "report.md").read_text()
