"""The supervised warm start of the learning check, on a few CPU steps of the tiny model.

What verl will later show the model must be what it was trained on: the batch holds the chat prompt
with the image tokens of the pinned frame, and the loss covers exactly the reference answer + <|im_end|>.
"""

from __future__ import annotations

import json

import pytest

from verl_perception import warm_start as ws
from verl_perception.metrics.rows import read_parquet_rows
from verl_perception.preprocess import synthetic_shapes as ss
from verl_perception.rewards import compute_score

MIN_PIXELS, MAX_PIXELS = 3136, 64 * 28 * 28


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ws_shapes")
    ss.convert(out, "train", 2, seed=0, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    ss.convert(out, "val", 2, seed=0, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    return out


def test_reference_answer_is_the_ground_truth_in_qwen_json(shapes):
    for row in read_parquet_rows(shapes / "val.parquet"):
        answer = ws.reference_answer(row)
        parsed = json.loads(answer)
        assert parsed["label"] == row["extra_info"]["expression"] and all(isinstance(v, int) for v in parsed["bbox_2d"])
        res = compute_score(row["data_source"], answer, row["reward_model"]["ground_truth"], row["extra_info"])
        assert res["format"] == 1.0 and res["iou"] > 0.9  # whole pixels: at most half a pixel off per edge


def test_batch_trains_only_the_answer_after_the_chat_prompt(shapes, tiny_model_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    rows = read_parquet_rows(shapes / "train.parquet")
    batch = ws.Collator(processor)(rows)
    tok = processor.tokenizer
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    for i, row in enumerate(rows):
        labels = batch["labels"][i]
        assert tok.decode(labels[labels != ws.IGNORE_INDEX]) == ws.reference_answer(row) + "<|im_end|>"
        ids = batch["input_ids"][i][batch["attention_mask"][i].bool()]
        # 168 x 252 frame = 6 x 9 merged patches
        assert int((ids == image_pad).sum()) == 54
        prompt = tok.decode(ids[labels[batch["attention_mask"][i].bool()] == ws.IGNORE_INDEX])
        assert prompt.endswith("<|im_start|>assistant\n") and row["extra_info"]["expression"] in prompt
    assert batch["image_grid_thw"].tolist() == [[1, 12, 18]] * len(rows)


def test_batch_of_images_of_different_sizes(tmp_path, tiny_model_dir):
    from transformers import AutoProcessor

    ss.convert(tmp_path, "val", 4, seed=2, sizes=((300, 400), (200, 200)), min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    rows = read_parquet_rows(tmp_path / "val.parquet")
    assert len({tuple(r["extra_info"]["input_size"]) for r in rows}) == 2
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    batch = ws.Collator(processor)(rows)
    pad = processor.tokenizer.pad_token_id
    for i, row in enumerate(rows):
        labels = batch["labels"][i]
        assert processor.tokenizer.decode(labels[labels != ws.IGNORE_INDEX]) == ws.reference_answer(row) + "<|im_end|>"
        ids = batch["input_ids"][i][batch["attention_mask"][i].bool()]
        assert pad not in ids.tolist()  # padding only after the answer, never inside the prompt


def test_a_few_steps_lower_the_loss_and_save_a_model_that_reloads_and_answers(shapes, tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "warm"
    summary = ws.train(
        str(shapes / "train.parquet"), str(shapes / "val.parquet"), str(out), model_path=tiny_model_dir,
        max_steps=8, batch_size=2, lr=3e-3, warmup_steps=0, eval_every=0, eval_rows=2, log_every=1, threads=1,
    )  # fmt: skip
    losses = [loss for _, loss in summary["losses"]]
    assert len(losses) == 8 and losses[-1] < losses[0] - 1.0, losses  # one fixed batch: it memorises
    assert summary["steps"] == 8 and summary["final"]["n"] == 2
    assert set(summary["final"]) >= {"format_rate", "miou", "acc@0.5", "reward"}
    assert json.loads((out / ws.SUMMARY_FILE).read_text())["losses"] == summary["losses"]

    model = AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(out)
    rows = read_parquet_rows(shapes / "val.parquet")
    answers = ws.greedy_answers(model, processor, rows, max_new_tokens=8)
    assert len(answers) == 2 and all(isinstance(a, str) and a for a in answers)
    # the reloaded model is the trained one: same greedy answers as the in-memory evaluation's first
    assert answers[0] == ws.greedy_answers(model, processor, rows[:1], max_new_tokens=8)[0]


def test_a_time_budget_stops_training_and_still_saves(shapes, tiny_model_dir, tmp_path):
    summary = ws.main([
        "--train", str(shapes / "train.parquet"), "--val", str(shapes / "val.parquet"), "--out", str(tmp_path),
        "--model", tiny_model_dir, "--max-steps", "50", "--batch-size", "2", "--max-minutes", "0",
        "--eval-every", "0", "--eval-rows", "1", "--threads", "1",
    ])  # fmt: skip
    assert summary["steps"] == 1 and summary["final"]["step"] == 1
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / ws.SUMMARY_FILE).is_file()


def test_training_forward_sees_the_positions_generation_sees(shapes, tiny_model_dir):
    """The loss must be computed with the M-RoPE (t, h, w) positions that generation, vLLM and verl give
    the image and the text after it: the batch's logits equal those of the processor's own encoding of
    prompt + answer (a batch without ``mm_token_type_ids`` is numbered 0, 1, 2, ... and differs)."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from verl_perception.generate import model_image

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    rows = read_parquet_rows(shapes / "train.parquet")
    batch = ws.Collator(processor)(rows)
    with torch.no_grad():
        hidden = model.model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).last_hidden_state
        train_logits = model.lm_head(hidden)
        for i, row in enumerate(rows):
            text = ws.prompt_text(processor, row) + ws.reference_answer(row) + processor.tokenizer.eos_token
            enc = processor(text=[text], images=[model_image(row)], return_tensors="pt", do_resize=False)
            n = int(batch["attention_mask"][i].sum())
            assert enc["input_ids"][0].tolist() == batch["input_ids"][i, :n].tolist()
            torch.testing.assert_close(train_logits[i, :n], model(**enc).logits[0], atol=1e-4, rtol=1e-4)


def test_the_best_evaluation_s_weights_are_saved_when_the_last_is_worse(shapes, tiny_model_dir, tmp_path, monkeypatch):
    """A run that ends (time budget, instability) after its best evaluation keeps the best weights."""
    import torch
    from safetensors.torch import load_file

    seen, rewards = [], iter([1.5, 0.25])  # the evaluation at step 2, then the final one at step 4
    real_greedy = ws.greedy_answers

    def greedy(model, processor, rows, **kw):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real_greedy(model, processor, rows, max_new_tokens=4)

    def score(rows, answers):
        r = next(rewards)
        return {"n": len(rows), "format_rate": 1.0, "reward": r, "iou_input": 0.0, "miou": 0.0, "acc@0.5": 0.0}

    monkeypatch.setattr(ws, "greedy_answers", greedy)
    monkeypatch.setattr(ws, "score_answers", score)
    out = tmp_path / "warm"
    summary = ws.train(
        str(shapes / "train.parquet"), str(shapes / "val.parquet"), str(out), model_path=tiny_model_dir,
        max_steps=4, batch_size=2, lr=3e-3, warmup_steps=0, eval_every=2, eval_rows=1, log_every=1, threads=1,
    )  # fmt: skip
    assert [e["step"] for e in summary["evals"]] == [2, 4] and summary["steps"] == 4
    assert summary["saved_step"] == 2 and summary["final"]["reward"] == 1.5
    saved = load_file(str(out / "model.safetensors"))
    name = next(k for k in saved if "embed_tokens" in k)
    key = next(k for k in seen[0] if k.endswith(name.split("model.", 1)[-1]))
    assert torch.equal(saved[name], seen[0][key]) and not torch.equal(saved[name], seen[1][key])
