"""The tiny offline Qwen3-VL: config as transformers 5.10 writes it, tokens, processor frame, CPU generate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from verl_perception import frame
from verl_perception.tiny_model import (
    ADDED_TOKENS,
    QWEN3_ADDED_TOKENS,
    bad_words_ids,
    build_tiny_model,
    main,
)


def _image(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _messages(prompt: str = "Locate the cat.") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


@pytest.fixture(scope="module")
def model_and_processor(tiny_qwen3_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen3_model_dir, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(tiny_qwen3_model_dir)


def test_config_is_a_small_real_qwen3_vl(tiny_qwen3_model_dir, model_and_processor):
    from transformers import AutoConfig, Qwen3VLConfig

    model, processor = model_and_processor
    raw = json.loads(open(f"{tiny_qwen3_model_dir}/config.json").read())
    assert raw["model_type"] == "qwen3_vl" and raw["architectures"] == ["Qwen3VLForConditionalGeneration"]
    assert raw["text_config"]["rope_parameters"]["mrope_interleaved"] is True
    config = AutoConfig.from_pretrained(tiny_qwen3_model_dir)
    assert isinstance(config, Qwen3VLConfig) and type(model).__name__ == "Qwen3VLForConditionalGeneration"
    text, vision = config.text_config, config.vision_config
    # no attention head smaller than 32 (text and vision), M-RoPE sections fill half the head
    assert text.head_dim >= 32 and vision.hidden_size // vision.num_heads >= 32
    assert sum(text.rope_parameters["mrope_section"]) == text.head_dim // 2
    assert vision.patch_size == 16 and vision.spatial_merge_size == 2
    assert max(vision.deepstack_visual_indexes) < vision.depth
    assert len(vision.deepstack_visual_indexes) <= text.num_hidden_layers
    tok = processor.tokenizer
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>") == 151655
    assert config.vision_start_token_id == 151652 and config.video_token_id == 151656
    assert tok.convert_tokens_to_ids(list(ADDED_TOKENS + QWEN3_ADDED_TOKENS)) == list(range(151643, 151669))
    assert text.vocab_size >= len(tok) and model.get_output_embeddings().weight.shape[0] == text.vocab_size
    assert frame.family_of_model(tiny_qwen3_model_dir) is frame.QWEN3_VL
    assert frame.family_of_processor(processor) is frame.QWEN3_VL


def test_chat_template_has_no_default_system_turn(model_and_processor):
    _, processor = model_and_processor
    text = processor.apply_chat_template(_messages("Find the cat."), add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Find the cat.<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("size", [(96, 128), (7, 9), (40, 3000), (2000, 1500)])
def test_image_tokens_match_the_frame(model_and_processor, size):
    _, processor = model_and_processor
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[_image(*size)], return_tensors="pt")
    h, w = frame.input_size(*size, family="qwen3_vl")
    assert tuple(int(v) * 16 for v in inputs["image_grid_thw"][0][1:]) == (h, w)
    n_pads = int((inputs["input_ids"][0] == 151655).sum())
    assert n_pads == h * w // 32**2  # one token per merged 32 x 32 patch


def test_generate_then_rescore_on_cpu(model_and_processor):
    model, processor = model_and_processor
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[_image(96, 128)], return_tensors="pt")
    forbidden = bad_words_ids(processor.tokenizer, model.config.text_config.vocab_size)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, min_new_tokens=4, do_sample=False, bad_words_ids=forbidden)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 4 <= len(new) <= 12 and not set(new.tolist()) & {i for [i] in forbidden}
    # the RL actor re-scores prompt + response with the image (deepstack features included); transformers
    # 5.10's Qwen3-VL wants the processor's mm_token_type_ids for M-RoPE (response tokens are text: 0)
    full = torch.cat([inputs["input_ids"][0], new])[None]
    types = torch.cat([inputs["mm_token_type_ids"][0], torch.zeros_like(new)])[None]
    with torch.no_grad():
        logits = model(input_ids=full, attention_mask=torch.ones_like(full), pixel_values=inputs["pixel_values"],
                       image_grid_thw=inputs["image_grid_thw"], mm_token_type_ids=types).logits  # fmt: skip
    assert logits.shape[:2] == full.shape and torch.isfinite(logits).all()


def test_builds_are_deterministic_and_the_cli_takes_the_family(tmp_path, tiny_qwen3_model_dir, capsys):
    from safetensors.torch import load_file

    again = build_tiny_model(tmp_path / "again", "qwen3_vl", seed=0)
    a, b = load_file(f"{tiny_qwen3_model_dir}/model.safetensors"), load_file(f"{again}/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any("deepstack" in k for k in a)
    main(["--out", str(tmp_path / "p"), "--family", "qwen3_vl", "--processor-only"])
    saved = json.loads((tmp_path / "p" / "processor_config.json").read_text())
    assert saved["processor_class"] == "Qwen3VLProcessor"
    assert saved["image_processor"]["patch_size"] == 16
    assert saved["image_processor"]["size"] == {"shortest_edge": frame.QWEN3_VL.min_pixels,
                                                "longest_edge": frame.QWEN3_VL.max_pixels}  # fmt: skip
    with pytest.raises(ValueError, match="no tiny model"):
        build_tiny_model(tmp_path / "x", "qwen2_vl")
