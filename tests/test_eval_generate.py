"""generate: HF backend on CPU with the tiny model (row order, resumability, input frame)."""

from __future__ import annotations

import json

import _eval_fixtures as fx
import pytest

from verl_perception.generate import HFGenerator, chat_messages, generate_file, main
from verl_perception.metrics.rows import EvalInputError


@pytest.fixture(scope="module")
def generator(tiny_model_dir):
    return HFGenerator(tiny_model_dir, device="cpu", dtype="float32", forbid_vision_tokens=True)


class Recording:
    """Wraps a generator and records which rows it was asked to answer."""

    def __init__(self, inner):
        self.inner, self.asked = inner, []

    def generate(self, rows, max_new_tokens, temperature):
        self.asked += [r["extra_info"]["index"] for r in rows]
        return self.inner.generate(rows, max_new_tokens, temperature)


def _lines(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_chat_messages_turns_the_placeholder_into_an_image_part():
    msgs = chat_messages([{"role": "user", "content": "<image>Find the dog."}])
    assert msgs == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find the dog."}]}]
    with pytest.raises(EvalInputError, match="exactly one"):
        chat_messages([{"role": "user", "content": "no image"}])


def test_model_sees_exactly_the_input_frame(generator):
    rows, _ = fx.grounding_rows(n=3)  # three different original sizes
    inputs = generator.inputs(rows)
    for row, (t, gh, gw) in zip(rows, inputs["image_grid_thw"].tolist()):
        ih, iw = row["extra_info"]["input_size"]
        assert (t, gh * 14, gw * 14) == (1, ih, iw)


def test_rows_in_order_and_resume_skips_answered_rows(tmp_path, generator):
    rows, _ = fx.grounding_rows(n=5)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    out = tmp_path / "responses.jsonl"
    rec = Recording(generator)
    first = generate_file("unused", data, out, limit=2, batch_size=2, max_new_tokens=6, generator=rec, progress=False)
    assert first == {"rows": 2, "generated": 2, "skipped": 0, "out": str(out)}
    before = _lines(out)
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"row": 3, "index": 3, "resp')  # a line cut by a crash: answered again
    rec.asked.clear()
    stats = generate_file("unused", data, out, batch_size=2, max_new_tokens=6, generator=rec, progress=False)
    assert stats["generated"] == 3 and stats["skipped"] == 2
    assert rec.asked == [2, 3, 4]
    lines = _lines(out)
    assert [r["row"] for r in lines] == [0, 1, 2, 3, 4]
    assert [r["index"] for r in lines] == [0, 1, 2, 3, 4]
    assert [r["data_source"] for r in lines] == [r["data_source"] for r in rows]
    assert lines[:2] == before
    assert all(isinstance(r["response"], str) for r in lines)
    rec.asked.clear()
    assert generate_file("unused", data, out, generator=rec, progress=False)["generated"] == 0 and not rec.asked


def test_resume_refuses_responses_of_another_file(tmp_path, generator):
    rows, _ = fx.grounding_rows(n=2)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    out = tmp_path / "responses.jsonl"
    out.write_text(json.dumps({"row": 0, "index": 77, "response": "x"}) + "\n")
    with pytest.raises(EvalInputError, match="another data file"):
        generate_file("unused", data, out, generator=generator, progress=False)


def test_vision_tokens_are_forbidden_only_when_asked(generator, tiny_model_dir):
    tok = generator.processor.tokenizer
    banned = {ids[0] for ids in generator.bad_words_ids}
    assert set(tok.convert_tokens_to_ids(["<|image_pad|>", "<|vision_start|>", "<|video_pad|>"])) <= banned
    assert HFGenerator(tiny_model_dir, device="cpu").bad_words_ids is None


def test_cli_hf_backend_on_cpu(tmp_path, tiny_model_dir, capsys):
    rows = fx.counting_rows(n=2)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    out = tmp_path / "r.jsonl"
    rc = main(
        [
            "--model",
            tiny_model_dir,
            "--data",
            data,
            "--out",
            str(out),
            "--backend",
            "hf",
            "--limit",
            "1",
            "--max-new-tokens",
            "4",
            "--forbid-vision-tokens",
            "--no-progress",
        ]
    )
    assert rc == 0 and len(_lines(out)) == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["generated"] == 1


def test_cli_vllm_backend_without_vllm_is_a_clear_error(tmp_path, tiny_model_dir, capsys):
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed")
    except ImportError:
        pass
    rows = fx.counting_rows(n=1)
    data = fx.write_parquet(rows, tmp_path / "val.parquet")
    rc = main(["--model", tiny_model_dir, "--data", data, "--out", str(tmp_path / "r.jsonl"), "--backend", "vllm"])
    assert rc == 2 and "vllm is not installed" in capsys.readouterr().err
