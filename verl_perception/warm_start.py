"""Supervised warm start for the learning check: teach a small offline Qwen2.5-VL the answer format.

GRPO only improves what a policy already samples: a random model never writes a parseable box, so every
reward is 0 and every advantage is 0. The learning check (``recipes/learning_check.sh``) therefore first
fine-tunes the model on the grounding rows' reference answers, just long enough that it answers in the
JSON format with a mean IoU that leaves GRPO room to improve (0.2-0.5), then runs GRPO from that
checkpoint.

Trainer: transformers' ``Trainer`` with one custom loss. verl 0.9.1's own SFT trainer
(``verl.trainer.sft_trainer`` + ``MultiTurnSFTDataset``) does handle Qwen2.5-VL images, but it needs a
``torch.distributed`` launch of its FSDP engine, a second parquet layout (``messages`` with the
assistant turn) and writes sharded checkpoints that must be merged before vLLM can load them; the warm
start must also run, and be tested, on a CPU. ``Trainer`` runs the same code on a CPU and a GPU, reads
our grounding parquet as it is, and saves a Hugging Face directory verl and vLLM load directly
(docs/recipes.md, "Learning check").

What the model is trained on is exactly what verl will show it: the row's chat ``prompt`` rendered by
the model's chat template with the generation prompt, the image resized to the row's pinned input frame
(:func:`verl_perception.generate.model_image`), then the reference answer
``{"bbox_2d": [x1, y1, x2, y2], "label": "<expression>"}`` (integers, input-frame pixels) and
``<|im_end|>``. The loss is the cross-entropy of the answer tokens only; the vocabulary projection is
applied to those positions alone (~34 of a ~170-token sequence: with a real-size vocabulary the head
dominates the cost).

Evaluation (``--eval-every``): greedy answers on the first ``--eval-rows`` validation rows, scored by
:func:`verl_perception.rewards.compute_score` (format rate, reward, IoU in the input frame) and
:func:`verl_perception.metrics.grounding.evaluate` (Acc@0.5, mean IoU in the original frame, the
benchmark's protocol). With ``--target-miou`` training stops at the first evaluation whose mean IoU
reaches it, so the checkpoint lands in the window GRPO needs; ``--max-minutes`` stops it on a wall-clock
budget (a GPU call of limited length), after which it is evaluated and saved as usual.

    python -m verl_perception.warm_start --train train.parquet --val val.parquet --out DIR \
        [--size small] [--max-steps 600] [--batch-size 16] [--lr 1e-3] [--eval-every 50] [--target-miou 0.3]

Writes ``DIR/`` (model, tokenizer, processor: a Hugging Face directory) and ``DIR/warm_start.json``
(the settings, the loss curve and every evaluation).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from verl_perception.generate import chat_messages, model_image
from verl_perception.metrics.rows import make_eval_row, read_parquet_rows
from verl_perception.rewards import compute_score, load_ground_truth

IGNORE_INDEX = -100
SUMMARY_FILE = "warm_start.json"


# ----------------------------------------------------------------------------- targets
def reference_answer(row: Mapping[str, Any]) -> str:
    """The answer the warm start teaches for a grounding row: its ground-truth box, rounded to whole
    input-frame pixels, in Qwen2.5-VL's JSON format with the row's expression as label."""
    gt = load_ground_truth(row["reward_model"]["ground_truth"])
    box = [int(round(float(v))) for v in gt["bbox"]]
    label = (row.get("extra_info") or {}).get("expression") or "object"
    return json.dumps({"bbox_2d": box, "label": label}, ensure_ascii=False)


def prompt_text(processor, row: Mapping[str, Any]) -> str:
    """The chat-rendered prompt verl feeds the policy (generation prompt included)."""
    return processor.apply_chat_template(chat_messages(row["prompt"]), tokenize=False, add_generation_prompt=True)


class Collator:
    """Rows -> a padded training batch: ``input_ids``, ``attention_mask``, ``labels`` (``IGNORE_INDEX``
    on the prompt and padding), ``pixel_values``, ``image_grid_thw``. Right padding."""

    def __init__(self, processor):
        self.processor = processor
        self.end = processor.tokenizer.eos_token  # <|im_end|>: the turn's end, where vLLM stops

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict:
        import torch

        tok = self.processor.tokenizer
        prompts = [prompt_text(self.processor, r) for r in rows]
        answers = [reference_answer(r) + self.end for r in rows]
        images = [model_image(r) for r in rows]
        # The images already have their input-frame size (multiples of 28): no second resize.
        # padded only to stack prompts of different lengths (image sizes, names); the pads are dropped below
        enc = self.processor(text=prompts, images=images, return_tensors="pt", padding=True, do_resize=False)
        ans_ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
        prompt_ids = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
        seqs = [p + a for p, a in zip(prompt_ids, ans_ids)]
        n = max(map(len, seqs))
        input_ids = torch.full((len(seqs), n), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((len(seqs), n), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, (p, a) in enumerate(zip(prompt_ids, ans_ids)):
            input_ids[i, : len(p) + len(a)] = torch.tensor(p + a)
            labels[i, len(p) : len(p) + len(a)] = torch.tensor(a)
            mask[i, : len(p) + len(a)] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": labels,
            "pixel_values": enc["pixel_values"],
            "image_grid_thw": enc["image_grid_thw"],
        }
        # Which tokens are image tokens (transformers >= 5): without them the model numbers the sequence
        # 0, 1, 2, ... (1D) instead of Qwen2.5-VL's M-RoPE (t, h, w) positions, which generation, vLLM and
        # verl use. The answer tokens are text (0).
        if "mm_token_type_ids" in enc:
            types = torch.zeros((len(seqs), n), dtype=enc["mm_token_type_ids"].dtype)
            for i, (t, m) in enumerate(zip(enc["mm_token_type_ids"], enc["attention_mask"])):
                prompt_types = t[m.bool()]
                types[i, : len(prompt_types)] = prompt_types
            batch["mm_token_type_ids"] = types
        return batch


def answer_loss(model, batch: Mapping[str, Any]):
    """Mean cross-entropy of the answer tokens (scalar tensor).

    Runs the multimodal backbone on the whole sequence, then the vocabulary head only at the positions
    that predict an answer token (shifted labels != IGNORE_INDEX).
    """
    import torch.nn.functional as F

    out = model.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        mm_token_type_ids=batch.get("mm_token_type_ids"),  # M-RoPE positions, as at generation (Collator)
        pixel_values=batch["pixel_values"],
        image_grid_thw=batch["image_grid_thw"],
        use_cache=False,
    )
    hidden = out.last_hidden_state[:, :-1]
    target = batch["labels"][:, 1:]
    keep = target != IGNORE_INDEX
    logits = model.lm_head(hidden[keep]).float()
    return F.cross_entropy(logits, target[keep])


# ----------------------------------------------------------------------------- evaluation
def greedy_answers(model, processor, rows: Sequence[Mapping[str, Any]], max_new_tokens: int = 48,
                   batch_size: int = 64) -> list[str]:  # fmt: skip
    """Greedy answers of ``model`` to ``rows`` (left-padded batches, the vision tokens forbidden)."""
    import torch

    from verl_perception.tiny_model import bad_words_ids

    tok = processor.tokenizer
    side = tok.padding_side
    tok.padding_side = "left"
    bad = bad_words_ids(tok)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            enc = processor(
                text=[prompt_text(processor, r) for r in chunk],
                images=[model_image(r) for r in chunk],
                padding=True,
                return_tensors="pt",
                do_resize=False,
            ).to(device)
            with torch.inference_mode():
                gen = model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                    top_k=None, bad_words_ids=bad,
                )
            out += processor.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        tok.padding_side = side
        model.train(was_training)
    return out


def score_answers(rows: Sequence[Mapping[str, Any]], answers: Sequence[str]) -> dict:
    """The project's reward and benchmark metrics of ``answers`` to grounding ``rows``.

    Returns ``{"n", "format_rate", "reward", "iou_input", "miou", "acc@0.5"}``: format rate, mean reward
    and mean IoU from :func:`~verl_perception.rewards.compute_score` (input frame, as GRPO sees them),
    mean IoU and Acc@0.5 from :func:`verl_perception.metrics.grounding.evaluate` (original frame).
    """
    from verl_perception.metrics import grounding

    scores = [
        compute_score(r["data_source"], a, r["reward_model"]["ground_truth"], r.get("extra_info"))
        for r, a in zip(rows, answers)
    ]
    bench = grounding.evaluate([make_eval_row(i, r, a) for i, (r, a) in enumerate(zip(rows, answers))])["metrics"]
    return {
        "n": len(rows),
        "format_rate": float(np.mean([s["format"] for s in scores])),
        "reward": float(np.mean([s["score"] for s in scores])),
        "iou_input": float(np.mean([s["iou"] for s in scores])),
        "miou": bench["miou"],
        "acc@0.5": bench["acc@0.5"],
    }


# ----------------------------------------------------------------------------- training
def _model_and_processor(model_path: str | None, size: str, out_dir: str, rows: Sequence[Mapping[str, Any]],
                         seed: int):  # fmt: skip
    """Load ``model_path``, or build a fresh random model of ``size`` with the data's pixel bounds.
    Returns ``(model, processor, where it came from)``."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from verl_perception.tiny_model import build_tiny_qwen2_5_vl

    if model_path:
        return (AutoModelForImageTextToText.from_pretrained(model_path, dtype=torch.float32),
                AutoProcessor.from_pretrained(model_path), model_path)  # fmt: skip
    info = rows[0].get("extra_info") or {}
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_qwen2_5_vl(tmp, int(info["min_pixels"]), int(info["max_pixels"]), seed=seed, dtype="float32",
                              size=size)  # fmt: skip
        model = AutoModelForImageTextToText.from_pretrained(tmp, dtype=torch.float32)
        processor = AutoProcessor.from_pretrained(tmp)
    return model, processor, f"fresh tiny_model size={size!r} seed={seed}"


def train(
    train_file: str,
    val_file: str,
    out_dir: str,
    *,
    model_path: str | None = None,
    size: str = "small",
    max_steps: int = 600,
    batch_size: int = 16,
    lr: float = 1e-3,
    warmup_steps: int = 30,
    weight_decay: float = 0.0,
    eval_every: int = 50,
    eval_rows: int = 64,
    target_miou: float | None = None,
    max_minutes: float | None = None,
    max_train_rows: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    bf16: bool | None = None,
    log_every: int = 10,
) -> dict:
    """Fine-tune on ``train_file``'s reference answers, evaluate on ``val_file``, save to ``out_dir``.

    Returns the summary also written to ``out_dir/warm_start.json``: settings, ``losses`` ([step, loss]),
    ``evals`` ([{"step", metrics of :func:`score_answers`}]), ``final`` (the evaluation of the saved
    weights), ``saved_step``, ``steps`` (steps run) and ``seconds``. The saved weights are the last step's,
    unless an earlier evaluation had a higher reward: then that evaluation's (a time budget or an unstable
    run can end between two good evaluations).
    """
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

    if threads:
        torch.set_num_threads(int(threads))
    set_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    train_rows = read_parquet_rows(train_file, max_train_rows)
    val_rows = read_parquet_rows(val_file, eval_rows)
    model, processor, init_path = _model_and_processor(model_path, size, out_dir, train_rows, seed)
    on_gpu = torch.cuda.is_available()
    if bf16 is None:
        bf16 = on_gpu

    summary: dict[str, Any] = {
        "train_file": os.path.abspath(train_file), "val_file": os.path.abspath(val_file), "init": init_path,
        "size": size if not model_path else None, "max_steps": max_steps, "batch_size": batch_size, "lr": lr,
        "warmup_steps": warmup_steps, "eval_every": eval_every, "eval_rows": len(val_rows),
        "target_miou": target_miou, "max_minutes": max_minutes, "seed": seed, "device": "cuda" if on_gpu else "cpu",
        "losses": [], "evals": [],
    }  # fmt: skip
    t0 = time.perf_counter()

    # The weights of the best evaluation so far (by reward), on the CPU: a run stopped by its time budget
    # between two good evaluations keeps the better weights, not the last ones.
    best: dict[str, Any] = {"reward": -math.inf, "step": None, "state": None}

    def evaluate(step: int) -> dict:
        answers = greedy_answers(model, processor, val_rows)
        metrics = {"step": step, **score_answers(val_rows, answers), "example": answers[0] if answers else ""}
        summary["evals"].append(metrics)
        if metrics["reward"] > best["reward"]:
            best.update(reward=metrics["reward"], step=step, metrics=metrics,
                        state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        print(f"[warm_start] step {step} eval: " + " ".join(
            f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float)) + f" | {metrics['example']!r}",
            flush=True)  # fmt: skip
        return metrics

    class Loop(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                summary["losses"].append([state.global_step, float(logs["loss"])])
                print(f"[warm_start] step {state.global_step} loss {logs['loss']:.4f} "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)  # fmt: skip

        def on_step_end(self, args, state, control, **kw):
            if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
                print(f"[warm_start] {max_minutes} minutes spent: stopping at step {state.global_step}", flush=True)
                control.should_training_stop = True
                return control
            if eval_every and state.global_step % eval_every == 0 and state.global_step < args.max_steps:
                m = evaluate(state.global_step)
                if target_miou is not None and m["miou"] >= target_miou:
                    print(f"[warm_start] mean IoU {m['miou']:.3f} >= target {target_miou}: stopping", flush=True)
                    control.should_training_stop = True
            return control

    class AnswerLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = answer_loss(model, inputs)
            return (loss, None) if return_outputs else loss

    args = TrainingArguments(
        output_dir=os.path.join(out_dir, "trainer"),
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=warmup_steps,
        weight_decay=weight_decay,
        max_grad_norm=1.0,
        logging_steps=log_every,
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        # the processor runs in the collator: keep a GPU fed (128 images a step at the recipe's batch)
        dataloader_num_workers=min(8, os.cpu_count() or 1) if on_gpu else 0,
        bf16=bool(bf16),
        seed=seed,
        disable_tqdm=True,
        use_cpu=not on_gpu,
    )
    trainer = AnswerLossTrainer(
        model=model, args=args, train_dataset=train_rows, data_collator=Collator(processor), callbacks=[Loop()]
    )
    result = trainer.train()
    summary["steps"] = int(result.global_step)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    last = summary["evals"][-1] if summary["evals"] else None
    summary["final"] = last if last and last["step"] == summary["steps"] else evaluate(summary["steps"])
    if best["step"] is not None and best["step"] != summary["steps"] and best["reward"] > summary["final"]["reward"]:
        model.load_state_dict(best["state"])
        print(f"[warm_start] keeping the weights of step {best['step']} (reward {best['reward']:.3f} > "
              f"{summary['final']['reward']:.3f} at step {summary['steps']})", flush=True)
        summary["final"] = best["metrics"]
    summary["saved_step"] = summary["final"]["step"]
    save(model, processor, out_dir)
    with open(os.path.join(out_dir, SUMMARY_FILE), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def save(model, processor, out_dir: str) -> None:
    """Write the model (float32 safetensors), tokenizer and processor as one Hugging Face directory."""
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m verl_perception.warm_start", description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="grounding train parquet")
    p.add_argument("--val", required=True, help="grounding validation parquet (evaluated on its first --eval-rows)")
    p.add_argument("--out", required=True, help="output directory (Hugging Face model + warm_start.json)")
    p.add_argument("--model", default=None, help="start from this model directory (default: build a fresh one)")
    p.add_argument("--size", default="small", help="shape of a fresh model (verl_perception.tiny_model.SIZES)")
    p.add_argument("--max-steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=50, help="evaluate every N steps (0: only at the end)")
    p.add_argument("--eval-rows", type=int, default=64)
    p.add_argument("--target-miou", type=float, default=None,
                   help="stop at the first evaluation whose mean IoU (original frame) reaches this")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this many minutes (then evaluate and save): fits a time-limited call")
    p.add_argument("--max-train-rows", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--log-every", type=int, default=10)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.target_miou is not None and not 0 < args.target_miou <= 1:
        raise SystemExit("--target-miou must lie in (0, 1]")
    summary = train(
        args.train, args.val, args.out, model_path=args.model, size=args.size, max_steps=args.max_steps,
        batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps, eval_every=args.eval_every,
        eval_rows=args.eval_rows, target_miou=args.target_miou, max_minutes=args.max_minutes,
        max_train_rows=args.max_train_rows, seed=args.seed,
        threads=args.threads, log_every=args.log_every,
    )  # fmt: skip
    final = summary["final"]
    print(f"[warm_start] done: {summary['steps']} steps in {summary['seconds']}s; saved the weights of step "
          f"{summary['saved_step']}: format_rate={final['format_rate']:.3f} "
          f"miou={final['miou']:.3f} acc@0.5={final['acc@0.5']:.3f} reward={final['reward']:.3f} -> {args.out}")
    if not math.isfinite(summary["losses"][-1][1] if summary["losses"] else 0.0):
        raise SystemExit("the loss diverged (non-finite)")
    return summary


if __name__ == "__main__":
    main()
