"""generate's vLLM backend without a GPU: vLLM's interfaces are faked only at the engine (``vllm.LLM`` and
``vllm.SamplingParams`` record what they are given); the requests, prompts and images are built for real by
our code from the bundled sample preprocessed for each model family. A change that breaks the request shape,
the image's frame or the pixel bounds given to vLLM fails here."""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest

from verl_perception.generate import chat_messages, generate_file, main, recorded_frame
from verl_perception.metrics.rows import EvalInputError, read_parquet_rows

PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


class FakeLLM:
    """Stands in for ``vllm.LLM``: records the engine arguments and every ``generate`` call."""

    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        FakeLLM.instances.append(self)

    def generate(self, requests, sampling_params=None, use_tqdm=True):
        self.calls.append((list(requests), sampling_params))
        done = sum(len(r) for r, _ in self.calls) - len(requests)
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"answer {done + i}")])
                for i in range(len(requests))]


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances = []
    return FakeLLM


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """The bundled sample preprocessed for each family at its recipe bounds: ``{family: dir}``."""
    from verl_perception.preprocess.samples import convert_samples

    out = {}
    for family in ("qwen2_5_vl", "qwen3_vl"):
        path = tmp_path_factory.mktemp(f"samples_{family}")
        convert_samples(path, model_family=family, tasks=("refcoco", "coco"))
        out[family] = path
    return out


FAMILIES = [("tiny_model_dir", "qwen2_5_vl", 14), ("tiny_qwen3_model_dir", "qwen3_vl", 16)]


@pytest.mark.parametrize("model_fixture,family,patch", FAMILIES)
@pytest.mark.parametrize("task", ["refcoco", "coco"])
def test_requests_carry_the_rows_frame_and_bounds(fake_vllm, samples, request, tmp_path, model_fixture, family,
                                                  patch, task):
    from transformers import AutoProcessor

    from verl_perception.frame import get_family

    model = request.getfixturevalue(model_fixture)
    data = next(Path(samples[family], task).glob("val.parquet"))
    rows = read_parquet_rows(data, 5)
    out = tmp_path / "responses.jsonl"
    stats = generate_file(model, data, out, backend="vllm", batch_size=2, max_new_tokens=7, limit=5, progress=False)
    assert stats["generated"] == len(rows) == 5

    (engine,) = fake_vllm.instances
    spec = get_family(family)
    assert engine.kwargs["model"] == model and engine.kwargs["limit_mm_per_prompt"] == {"image": 1}
    # the bounds the rows' frames were computed with (the family's recipe bounds), not Qwen2.5-VL's for all
    bounds = {"min_pixels": spec.min_pixels, "max_pixels": spec.max_pixels}
    assert engine.kwargs["mm_processor_kwargs"] == bounds
    assert {r["extra_info"]["min_pixels"] for r in rows} == {spec.min_pixels}
    assert engine.kwargs["tensor_parallel_size"] == 1

    processor = AutoProcessor.from_pretrained(model)
    requests = [req for reqs, _ in engine.calls for req in reqs]
    assert [len(reqs) for reqs, _ in engine.calls] == [2, 2, 1]
    for row, req in zip(rows, requests):
        assert set(req) == {"prompt", "multi_modal_data"}
        prompt = processor.apply_chat_template(chat_messages(row["prompt"]), tokenize=False, add_generation_prompt=True)
        assert req["prompt"] == prompt and req["prompt"].count(PLACEHOLDER) == 1
        assert req["prompt"].endswith("<|im_start|>assistant\n")
        image = req["multi_modal_data"]["image"]
        h, w = row["extra_info"]["input_size"]
        assert image.size == (w, h)  # PIL: (width, height)
        # what vLLM's Hugging Face processor does with it under those bounds: the stored input frame, unmoved
        grid = processor.image_processor(images=[image], **bounds, return_tensors="pt")["image_grid_thw"]
        assert grid.tolist() == [[1, h // patch, w // patch]]
    params = engine.calls[0][1].kwargs
    assert params["temperature"] == 0.0 and params["max_tokens"] == 7 and params["top_p"] == 1.0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["response"] for line in lines] == [f"answer {i}" for i in range(5)]
    assert [line["row"] for line in lines] == list(range(5))


def test_tensor_parallel_size_reaches_the_engine(fake_vllm, samples, tiny_model_dir, tmp_path):
    data = str(Path(samples["qwen2_5_vl"], "refcoco", "val.parquet"))
    code = main(["--model", tiny_model_dir, "--data", data, "--out", str(tmp_path / "r.jsonl"), "--backend", "vllm",
                 "--tensor-parallel-size", "2", "--limit", "1", "--no-progress"])
    assert code == 0 and fake_vllm.instances[0].kwargs["tensor_parallel_size"] == 2


def test_a_model_of_the_other_family_is_refused_before_loading(fake_vllm, samples, tiny_qwen3_model_dir, tmp_path,
                                                               capsys):
    data = str(Path(samples["qwen2_5_vl"], "refcoco", "val.parquet"))
    code = main(["--model", tiny_qwen3_model_dir, "--data", data, "--out", str(tmp_path / "r.jsonl"), "--backend",
                 "vllm", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the model") and "--model-family qwen3_vl" in err
    assert fake_vllm.instances == []  # refused before any engine start


def test_rows_of_two_frames_are_refused(samples):
    rows = read_parquet_rows(Path(samples["qwen2_5_vl"], "refcoco", "val.parquet"), 2)
    rows += read_parquet_rows(Path(samples["qwen3_vl"], "refcoco", "val.parquet"), 2)
    with pytest.raises(EvalInputError, match="2 different frames"):
        recorded_frame(rows)
    family, lo, hi = recorded_frame(rows[:2])
    assert (family.name, lo, hi) == ("qwen2_5_vl", 3136, 1003520)
