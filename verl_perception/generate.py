"""Greedy answers of a model on a perception parquet, one JSON line per row.

    python -m verl_perception.generate --model PATH --data val.parquet --out responses.jsonl \
        [--backend {auto,vllm,hf}] [--batch-size 8] [--max-new-tokens 1024] [--temperature 0] [--limit N]

Backends: vLLM's offline engine (``LLM.generate`` with ``multi_modal_data``) when vLLM is
importable (``--backend auto``), else Hugging Face transformers (``AutoModelForImageTextToText``
+ ``AutoProcessor``; CPU works). Either way the prompt is the row's chat ``prompt`` with its
``<image>`` placeholder turned into an image part, rendered by the model's chat template, and
the image is resized (qwen-vl-utils ``fetch_image``) to the row's pinned input frame
``extra_info.input_size``, so the model sees exactly the frame its ground truth is written in.

Output lines: ``{"row": position, "index": extra_info.index, "data_source": ..., "response": ...}``
in row order. The file is resumable: rows already answered (by ``row``, checked against
``index``) are skipped, new answers are appended batch by batch, and the finished file is
rewritten in row order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from verl_perception.metrics.rows import EvalInputError, image_cell, open_image, read_parquet_rows

IMAGE_PLACEHOLDER = "<image>"


# ----------------------------------------------------------------------------- prompts and images
def chat_messages(prompt: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The row's messages with each ``<image>`` placeholder turned into an image content part.

    ``[{"role": "user", "content": "<image>Find the dog."}]`` ->
    ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find the dog."}]}]``.
    Exactly one image is expected over the whole prompt.
    """
    out, n_images = [], 0
    for msg in prompt:
        content = msg.get("content")
        if isinstance(content, str) and IMAGE_PLACEHOLDER in content:
            parts = []
            for i, piece in enumerate(content.split(IMAGE_PLACEHOLDER)):
                if i > 0:
                    parts.append({"type": "image"})
                    n_images += 1
                if piece:
                    parts.append({"type": "text", "text": piece})
            out.append({"role": msg["role"], "content": parts})
        else:
            out.append({"role": msg["role"], "content": content})
    if n_images != 1:
        raise EvalInputError(f"the prompt must hold exactly one {IMAGE_PLACEHOLDER!r} placeholder, found {n_images}")
    return out


def input_frame(row: Mapping[str, Any]) -> tuple[int, int]:
    """``(h, w)`` the model must see: ``extra_info.input_size``, else the image's pinned size."""
    info = row.get("extra_info") or {}
    size = info.get("input_size")
    if size is None:
        cell = image_cell(row) or {}
        if cell.get("resized_height") and cell.get("resized_width"):
            size = (cell["resized_height"], cell["resized_width"])
    if size is None:
        raise EvalInputError("the row has neither extra_info.input_size nor a pinned resized_height/width")
    return int(size[0]), int(size[1])


def recorded_frame(rows: Sequence[Mapping[str, Any]]):
    """``(family, min_pixels, max_pixels)`` the rows' input frames were computed with: ``extra_info``'s
    ``model_family``, ``min_pixels`` and ``max_pixels`` (the family's recipe bounds where a row has none). A
    file holds one such frame; rows of several raise :class:`EvalInputError` (the backends build one
    processor per run)."""
    from verl_perception.frame import family_of

    seen = set()
    for row in rows:
        info = row.get("extra_info") or {}
        family = family_of(info)
        lo, hi = info.get("min_pixels"), info.get("max_pixels")
        seen.add((family.name, int(lo) if lo is not None else family.min_pixels,
                  int(hi) if hi is not None else family.max_pixels))
    if len(seen) > 1:
        raise EvalInputError(f"the rows were preprocessed for {len(seen)} different frames "
                             f"{sorted(seen)}: generate each family / pixel-bound set separately")
    if not seen:
        raise EvalInputError("no rows to answer")
    from verl_perception.frame import get_family

    name, lo, hi = seen.pop()
    return get_family(name), lo, hi


def check_model_family(model: str, family) -> None:
    """The model must write coordinates in the family the rows were made for (a Qwen2.5-VL answers in
    pixels, a Qwen3-VL in 0..1000): a mismatch would score every box wrongly. Silent when the model's
    family cannot be read (e.g. a hub name of another model family's fine-tune)."""
    from verl_perception.frame import UnknownFamilyError, family_of_model

    try:
        model_family = family_of_model(model)
    except (UnknownFamilyError, OSError, ValueError):
        return
    if model_family is not family:
        raise EvalInputError(
            f"the model {model} is a {model_family.name} but the data was preprocessed for {family.name}: "
            f"preprocess it again with --model-family {model_family.name}, or evaluate a {family.name} model"
        )


def check_model_path(model: str) -> None:
    """A local ``--model`` must be a Hugging Face checkpoint directory (hub names pass as they are)."""
    path = os.path.expanduser(model)
    local = model.startswith(("/", "./", "../", "~")) or os.path.exists(path)
    if not local:
        return
    if not os.path.exists(path):
        raise EvalInputError(f"--model {model}: no such directory; pass a Hugging Face checkpoint directory "
                             "(with config.json) or a hub name such as Qwen/Qwen2.5-VL-3B-Instruct")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise EvalInputError(f"--model {model}: not a Hugging Face checkpoint directory (no config.json); "
                             "pass the directory that holds config.json and the weights")


def check_out_file(out: str) -> None:
    """``--out`` must be a writable file path (checked before a model is loaded)."""
    if os.path.isdir(out):
        raise EvalInputError(
            f"--out {out}: is a directory; pass a file path such as {os.path.join(out, 'responses.jsonl')}"
        )
    parent = os.path.dirname(os.path.abspath(out))
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise EvalInputError(f"--out {out}: {probe} is a file, not a directory; pass another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise EvalInputError(f"--out {out}: {probe} is not writable; pass another --out")


def model_image(row: Mapping[str, Any]):
    """The row's image as the model sees it: decoded and resized to the pinned input frame."""
    from qwen_vl_utils import fetch_image

    from verl_perception.frame import family_of

    h, w = input_frame(row)
    image = open_image(image_cell(row))
    # fetch_image rounds the pin to its factor (2 x image_patch_size): the row's family's, or a
    # Qwen3-VL frame (multiples of 32) would be moved to multiples of 28
    patch = family_of(row.get("extra_info")).patch_size
    return fetch_image({"image": image, "resized_height": h, "resized_width": w}, image_patch_size=patch)


# ----------------------------------------------------------------------------- resumable output
def read_done(path: str, rows: Sequence[Mapping[str, Any]]) -> dict[int, dict]:
    """Answers already in ``path`` keyed by row position (validated against the rows' index)."""
    done: dict[int, dict] = {}
    if not os.path.exists(path):
        return done
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                # A line cut by a crash mid-write: the row is answered again.
                continue
            pos = rec.get("row")
            if not isinstance(pos, int) or not 0 <= pos < len(rows) or "response" not in rec:
                raise EvalInputError(f"{path}:{n}: not a line of this data file (row={pos!r}); use another --out")
            want = (rows[pos].get("extra_info") or {}).get("index")
            if want is not None and rec.get("index") is not None and str(want) != str(rec["index"]):
                raise EvalInputError(
                    f"{path}:{n}: row {pos} has index {rec['index']!r} but the data's is {want!r}: "
                    "these responses come from another data file; use another --out"
                )
            done[pos] = rec
    return done


def record(pos: int, row: Mapping[str, Any], response: str) -> dict:
    info = row.get("extra_info") or {}
    return {"row": pos, "index": info.get("index"), "data_source": row.get("data_source"), "response": response}


def finalize(path: str, done: Mapping[int, dict], n_rows: int) -> None:
    """Rewrite ``path`` with one line per answered row, in row order (atomic replace)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for pos in range(n_rows):
            if pos in done:
                f.write(json.dumps(done[pos], ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- backends
class HFGenerator:
    """transformers backend: batched ``generate`` with left padding; greedy unless temperature > 0."""

    def __init__(self, model: str, device: str | None = None, dtype: str | None = None,
                 forbid_vision_tokens: bool = False, seed: int = 0):  # fmt: skip
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        self.processor = AutoProcessor.from_pretrained(model)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=getattr(torch, dtype))
        self.model.to(self.device).eval()
        self.bad_words_ids = None
        if forbid_vision_tokens:
            from verl_perception.tiny_model import bad_words_ids

            vocab = self.model.get_output_embeddings().weight.shape[0]
            self.bad_words_ids = bad_words_ids(self.processor.tokenizer, vocab)
        self.seed = seed

    def inputs(self, rows: Sequence[Mapping[str, Any]]):
        """Processor outputs for a batch (``image_grid_thw`` x patch size is each row's input frame)."""
        texts = [
            self.processor.apply_chat_template(chat_messages(r["prompt"]), tokenize=False, add_generation_prompt=True)
            for r in rows
        ]
        images = [model_image(r) for r in rows]
        # The images already have their input-frame size (multiples of the factor): no second resize.
        return self.processor(text=texts, images=images, padding=True, return_tensors="pt", do_resize=False)

    def generate(self, rows: Sequence[Mapping[str, Any]], max_new_tokens: int, temperature: float) -> list[str]:
        inputs = self.inputs(rows).to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens}
        if temperature > 0:
            self.torch.manual_seed(self.seed)
            kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.bad_words_ids:
            kwargs["bad_words_ids"] = self.bad_words_ids
        with self.torch.inference_mode():
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1] :]
        return self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)


class VLLMGenerator:
    """vLLM offline engine: ``LLM.generate([{"prompt", "multi_modal_data": {"image": PIL}}], SamplingParams)``."""

    def __init__(self, model: str, forbid_vision_tokens: bool = False, seed: int = 0, max_model_len: int | None = None,
                 tensor_parallel_size: int = 1, pixel_bounds: tuple[int, int] | None = None):  # fmt: skip
        from transformers import AutoProcessor
        from vllm import LLM

        from verl_perception.frame import family_of_processor

        self.processor = AutoProcessor.from_pretrained(model)
        if pixel_bounds is None:  # the model family's recipe bounds (no rows at hand)
            family = family_of_processor(self.processor)
            if family is None:
                raise EvalInputError(f"cannot tell the family of {model}'s processor: pass pixel_bounds")
            pixel_bounds = (family.min_pixels, family.max_pixels)
        kwargs: dict[str, Any] = dict(
            model=model,
            limit_mm_per_prompt={"image": 1},
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            # Images arrive at their input-frame size, computed with the rows' recorded bounds (factor
            # included), so vLLM's processor, given the same bounds, keeps them as they are.
            mm_processor_kwargs={"min_pixels": int(pixel_bounds[0]), "max_pixels": int(pixel_bounds[1])},
        )
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.bad_words = None
        if forbid_vision_tokens:
            from verl_perception.tiny_model import VISION_TOKENS

            self.bad_words = list(VISION_TOKENS)
        self.seed = seed

    def generate(self, rows: Sequence[Mapping[str, Any]], max_new_tokens: int, temperature: float) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=temperature, top_p=1.0, max_tokens=max_new_tokens, seed=self.seed, bad_words=self.bad_words
        )
        requests = [
            {
                "prompt": self.processor.apply_chat_template(
                    chat_messages(r["prompt"]), tokenize=False, add_generation_prompt=True
                ),
                "multi_modal_data": {"image": model_image(r)},
            }
            for r in rows
        ]
        outputs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        return [o.outputs[0].text for o in outputs]


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def make_generator(backend: str, model: str, *, device: str | None = None, dtype: str | None = None,
                   forbid_vision_tokens: bool = False, seed: int = 0, tensor_parallel_size: int = 1,
                   pixel_bounds: tuple[int, int] | None = None):  # fmt: skip
    if backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    if backend == "vllm":
        if not vllm_available():
            raise EvalInputError("--backend vllm but vllm is not installed (pip install vllm, or use --backend hf)")
        return VLLMGenerator(model, forbid_vision_tokens=forbid_vision_tokens, seed=seed,
                             tensor_parallel_size=tensor_parallel_size, pixel_bounds=pixel_bounds)
    if backend == "hf":
        return HFGenerator(model, device=device, dtype=dtype, forbid_vision_tokens=forbid_vision_tokens, seed=seed)
    raise EvalInputError(f"unknown backend {backend!r}")


def _batches(items: Sequence[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def generate_file(
    model: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    backend: str = "auto",
    batch_size: int = 8,
    max_new_tokens: int = 1024,
    temperature: float = 0.0,
    limit: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    forbid_vision_tokens: bool = False,
    seed: int = 0,
    progress: bool = True,
    generator=None,
    tensor_parallel_size: int = 1,
) -> dict:
    """Answer every row of ``data`` (the first ``limit``) into ``out``; returns counts.

    ``forbid_vision_tokens`` bans the vision special tokens from the output: meant for random
    tiny models (the demo), which would otherwise emit ``<|image_pad|>``; a trained model never
    needs it. ``generator`` (an object with ``generate(rows, max_new_tokens, temperature)``)
    replaces the backend, e.g. to reuse one loaded model for several files.
    """
    from tqdm import tqdm

    if batch_size < 1 or max_new_tokens < 1 or temperature < 0:
        raise EvalInputError("need --batch-size >= 1, --max-new-tokens >= 1 and --temperature >= 0")
    out = os.fspath(out)
    check_out_file(out)
    rows = read_parquet_rows(data, limit)
    done = read_done(out, rows)
    todo = [i for i in range(len(rows)) if i not in done]
    if todo:
        for i in todo:  # fail before loading a model when a row cannot be prompted
            try:
                chat_messages(rows[i]["prompt"])
                input_frame(rows[i])
            except EvalInputError as e:
                raise EvalInputError(f"row {i}: {e}") from e
        family, lo, hi = recorded_frame([rows[i] for i in todo])
        if generator is None:
            check_model_path(model)
            check_model_family(model, family)
            generator = make_generator(backend, model, device=device, dtype=dtype,
                                       forbid_vision_tokens=forbid_vision_tokens, seed=seed,
                                       tensor_parallel_size=tensor_parallel_size, pixel_bounds=(lo, hi))  # fmt: skip
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with (
            open(out, "a", encoding="utf-8") as f,
            tqdm(total=len(rows), initial=len(done), desc="generate", unit="row", disable=not progress) as bar,
        ):
            for batch in _batches(todo, batch_size):
                try:
                    texts = generator.generate([rows[i] for i in batch], max_new_tokens, temperature)
                except EvalInputError as e:  # e.g. a corrupt image: name the rows, keep what is done
                    raise EvalInputError(f"rows {batch}: {e}") from e
                for i, text in zip(batch, texts):
                    done[i] = record(i, rows[i], text)
                    f.write(json.dumps(done[i], ensure_ascii=False) + "\n")
                f.flush()
                bar.update(len(batch))
    finalize(out, done, len(rows))
    return {"rows": len(rows), "generated": len(todo), "skipped": len(rows) - len(todo), "out": out}


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m verl_perception.generate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="model directory (HF format)")
    p.add_argument("--data", required=True, help="perception parquet (e.g. val.parquet)")
    p.add_argument("--out", required=True, help="responses.jsonl to write (resumed when it exists)")
    p.add_argument("--backend", default="auto", choices=["auto", "vllm", "hf"], help="auto: vLLM when installed")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the paper's evaluation)")
    p.add_argument("--limit", type=int, default=None, help="answer the first N rows only")
    p.add_argument("--device", default=None, help="hf backend: cuda if available, else cpu")
    p.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"],
                   help="hf backend: bfloat16 on cuda, float32 on cpu")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tensor-parallel-size", type=int, default=1,
                   help="vllm backend: GPUs per model copy (vLLM's tensor parallelism; 2 for 7B on 80 GB GPUs)")
    p.add_argument("--forbid-vision-tokens", action="store_true",
                   help="ban vision special tokens from the output (random tiny models only)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        stats = generate_file(
            args.model, args.data, args.out, backend=args.backend, batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens, temperature=args.temperature, limit=args.limit,
            device=args.device, dtype=args.dtype, forbid_vision_tokens=args.forbid_vision_tokens, seed=args.seed,
            progress=not args.no_progress, tensor_parallel_size=args.tensor_parallel_size,
        )  # fmt: skip
    except EvalInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
