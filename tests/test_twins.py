"""Real-shape twins (verl_perception.twins): the released shapes, counted on the meta device, the tokenizer ids
of the real models, and the never-sampled rows, on a CPU."""

from __future__ import annotations

import json

import pytest
import torch

from verl_perception import twins
from verl_perception.tiny_model import main, make_tiny_processor

QWEN2_5_VL_3B = twins.TWINS[("qwen2_5_vl", "3b")]
QWEN3_VL_4B = twins.TWINS[("qwen3_vl", "4b")]


def qwen2_5_vl_params(text: dict, vision: dict, vocab: int) -> int:
    """Hand count of a tied-embedding Qwen2.5-VL from its config numbers (independent of transformers)."""
    h, i, layers = text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"]
    kv = text["num_key_value_heads"] * h // text["num_attention_heads"]
    attn = (h * h + h) + 2 * (h * kv + kv) + h * h  # q, k, v with bias; o without
    layer = attn + 3 * h * i + 2 * h  # SwiGLU MLP, two RMSNorms
    c, ci, depth, out = vision["hidden_size"], vision["intermediate_size"], vision["depth"], vision["out_hidden_size"]
    patch = 3 * vision["temporal_patch_size"] * vision["patch_size"] ** 2 * c  # conv, no bias
    block = 2 * c + (3 * c * c + 3 * c) + (c * c + c) + 2 * (c * ci + ci) + (ci * c + c)
    merged = 4 * c  # spatial merge 2 x 2
    merger = c + (merged * merged + merged) + (merged * out + out)
    return vocab * h + layers * layer + h + patch + depth * block + merger


def qwen3_vl_params(text: dict, vision: dict, vocab: int) -> int:
    """Hand count of a tied-embedding Qwen3-VL (QK-norm, explicit head_dim, deepstack mergers)."""
    h, i, layers, d = text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"], text["head_dim"]
    q, kv = text["num_attention_heads"] * d, text["num_key_value_heads"] * d
    layer = h * q + 2 * h * kv + q * h + 2 * d + 3 * h * i + 2 * h
    c, ci, depth, out = vision["hidden_size"], vision["intermediate_size"], vision["depth"], vision["out_hidden_size"]
    patch = 3 * vision["temporal_patch_size"] * vision["patch_size"] ** 2 * c + c  # conv with bias
    block = 2 * 2 * c + (3 * c * c + 3 * c) + (c * c + c) + (c * ci + ci) + (ci * c + c)  # LayerNorms, GELU MLP
    merged = 4 * c

    def merger(norm: int) -> int:
        return 2 * norm + (merged * merged + merged) + (merged * out + out)

    deepstack = len(vision["deepstack_visual_indexes"]) * merger(merged)  # post-shuffle norms
    return (vocab * h + layers * layer + h + patch + vision["num_position_embeddings"] * c + depth * block
            + merger(c) + deepstack)


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    from transformers import AutoConfig

    out = {}
    for family, size in twins.TWINS:
        path = tmp_path_factory.mktemp(f"twin_{size}")
        main(["--out", str(path), "--family", family, "--size", size, "--config-only"])
        out[size] = path, AutoConfig.from_pretrained(path)
    return out


def test_parameter_counts_are_the_released_models(configs):
    """Meta-device counts equal the published counts and a hand count from the config numbers."""
    for size, twin, hand in (("3b", QWEN2_5_VL_3B, qwen2_5_vl_params), ("4b", QWEN3_VL_4B, qwen3_vl_params)):
        _, config = configs[size]
        counted = twins.count_parameters(config)
        assert counted == twin.params, (size, counted)
        assert hand(twin.text, twin.vision, twins.REAL_VOCAB_SIZE) == twin.params, size
    assert QWEN2_5_VL_3B.params == 3_754_622_976 and QWEN3_VL_4B.params == 4_437_815_808


def test_config_files_hold_the_real_shapes_and_ids(configs):
    path, config = configs["3b"]
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads,
            text.intermediate_size, text.vocab_size) == (2048, 36, 16, 2, 11008, 151936)
    assert (vision.depth, vision.hidden_size, vision.fullatt_block_indexes, vision.window_size) == (32, 1280, [7, 15, 23, 31], 112)
    assert text.rope_parameters["mrope_section"] == [16, 24, 24] and config.tie_word_embeddings
    assert config.architectures == ["Qwen2_5_VLForConditionalGeneration"]  # verl's HFModelConfig needs it
    # the released models' special ids, from the tokenizer the twin ships
    assert (config.image_token_id, config.video_token_id, config.vision_start_token_id) == (151655, 151656, 151652)
    assert (text.bos_token_id, text.eos_token_id, text.pad_token_id) == (151643, 151645, 151643)
    assert not list(path.glob("*.safetensors"))  # config only
    generation = json.loads((path / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643]

    path4, config4 = configs["4b"]
    t4, v4 = config4.text_config, config4.vision_config
    assert (t4.hidden_size, t4.num_hidden_layers, t4.num_attention_heads, t4.num_key_value_heads, t4.head_dim,
            t4.intermediate_size) == (2560, 36, 32, 8, 128, 9728)
    assert (v4.depth, v4.hidden_size, v4.deepstack_visual_indexes, v4.patch_size) == (24, 1024, [5, 11, 17], 16)
    assert config4.architectures == ["Qwen3VLForConditionalGeneration"]
    assert t4.rope_parameters["mrope_interleaved"] and t4.rope_parameters["mrope_section"] == [24, 20, 20]
    assert json.loads((path4 / "processor_config.json").read_text())["image_processor"]["patch_size"] == 16


def test_recipes_read_the_family_from_a_twin(configs):
    from verl_perception import frame

    assert frame.family_of_model(configs["3b"][0]).name == "qwen2_5_vl"
    assert frame.family_of_model(configs["4b"][0]).name == "qwen3_vl"


def test_never_sampled_ids_cover_vision_ends_and_padding():
    tokenizer = make_tiny_processor().tokenizer
    ids = twins.never_sampled_ids(tokenizer, twins.REAL_VOCAB_SIZE)
    assert {151643, 151645, 151652, 151653, 151654, 151655, 151656} <= set(ids)
    assert set(range(len(tokenizer), twins.REAL_VOCAB_SIZE)) <= set(ids)
    assert 151644 not in ids and 9707 not in ids  # <|im_start|> and ordinary text stay


def test_unknown_twin_is_one_error_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--family", "qwen3_vl", "--size", "3b", "--config-only"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: no real-shape twin '3b' for qwen3_vl")
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--size", "tiny", "--config-only"])


def test_twin_weights_never_sample_ends_or_vision(monkeypatch, tmp_path):
    """The weight recipe on a scaled-down twin (same code path, tiny widths, CPU): the never-sampled rows
    of the tied embedding are zero, the others scaled, and greedy decoding runs to the length limit."""
    from transformers import AutoModelForImageTextToText

    small = twins.Twin("qwen2_5_vl", "3b", "test", 0,
                       text=dict(QWEN2_5_VL_3B.text, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1,
                                 rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6]}),
                       vision=dict(QWEN2_5_VL_3B.vision, depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                                   out_hidden_size=64, fullatt_block_indexes=[1]))
    monkeypatch.setitem(twins.TWINS, ("qwen2_5_vl", "3b"), small)
    path = twins.build_twin(tmp_path, "qwen2_5_vl", "3b", min_pixels=16 * 784, max_pixels=64 * 784, seed=3)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    tokenizer = make_tiny_processor(16 * 784, 64 * 784).tokenizer
    emb = model.get_input_embeddings().weight
    never = twins.never_sampled_ids(tokenizer, emb.shape[0])
    assert emb[never].abs().max() == 0
    kept = torch.ones(emb.shape[0], dtype=torch.bool)
    kept[never] = False
    assert 0.1 < emb[kept].std() < 0.4  # initialiser std 0.02, times LOGIT_SCALE
    ids = torch.tensor([tokenizer.encode("Hello world, describe the scene.")])
    out = model.generate(ids, max_new_tokens=48, do_sample=False)
    new = out[0, ids.shape[1]:].tolist()
    assert len(new) == 48 and not set(new) & set(never)
