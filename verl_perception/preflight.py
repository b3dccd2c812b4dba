"""Consistency checks a recipe runs before any GPU is touched.

A GRPO job that dies after twenty minutes of model loading on a wrong Hydra key, a prompt budget
too small for the image tokens, or pixel bounds that disagree with the preprocessed frame wastes a
cluster allocation. ``python -m verl_perception.preflight -- <hydra overrides>`` composes the exact
config ``python -m verl.trainer.main_ppo <hydra overrides>`` would run and checks, on CPU:

1. Hydra composition against the installed verl's ``ppo_trainer`` config (a wrong key fails here).
2. verl's own validation: ``verl.utils.config.validate_config`` exactly as ``main_ppo`` calls it
   before Ray starts (it builds the actor's ``FSDPActorConfig``), plus ``omega_conf_to_dataclass``
   on the sections verl's workers turn into dataclasses: rollout (``RolloutConfig``), reference
   (``FSDPActorConfig``, after verl's own key renaming), algorithm (``AlgoConfig``), and the model
   (``HFModelConfig``) when its path is local, because that dataclass reads the checkpoint.
3. The ``perception`` reward manager is in verl's reward-loop registry (the ``verl.plugins`` entry
   point loaded) and ``reward.reward_kwargs`` are valid per-task reward options.
4. The dataset adapter (``data.custom_cls``) resolves the way verl resolves it.
5. The model family (``verl_perception.frame``: resize factor, pixel bounds, coordinate convention)
   of the model (its ``config.json``, or its hub name; ``data.perception_model_family`` overrides),
   of the local processor (its patch size) and of the parquet rows (``extra_info.model_family``)
   agree.
   The coordinate frame: for a few parquet rows, the image verl will feed the model (verl's
   ``process_image`` on the stored image dict, then the processor's resize with the effective
   pixel bounds) has exactly ``extra_info["input_size"]``, and the bounds stated in the image
   dict, if any, equal the recipe's.
6. The prompt budget: ``data.max_prompt_length`` >= image tokens allowed by max_pixels / factor² +
   the instruction (counted with the model's tokenizer when it is on local disk; otherwise
   estimated as one token per two UTF-8 bytes + 48 tokens of chat template, which over-counts
   Qwen's tokenizer by about 2x on English text).
7. Batch sizes the data-parallel split needs and the token budget of dynamic batching; with dynamic
   sampling (``algorithm.filter_groups``), what verl would ignore or fail on: another custom sampler, a
   metric the rollouts do not carry, ``max_num_gen_batches``, a colocated reward model.
8. The machine (skipped by ``--dry-run``, which reports them as notes): the GPUs asked for exist
   on a single node; every module the chosen trainer path imports is installed (TransferQueue for
   verl's default V1 trainer, vLLM or SGLang for the rollout); flash-attn is installed when the
   config needs it (``use_remove_padding=True`` or ``attn_implementation=flash_attention_2``), torch's
   varlen attention when it asks for ``flash_varlen_torch``.
   These are what killed real runs only after Ray had started.

Every problem names the setting to change. Exit status: 0 clean, 2 problems found, 1 when the
config does not even compose.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from verl_perception.frame import (
    DEFAULT_FRAME,
    LEGACY_FAMILY,
    QWEN2_5_VL,
    FrameSpec,
    UnknownFamilyError,
    family_of_model,
    get_family,
)

# Published preprocessor_config.json bounds of Qwen2.5-VL-*-Instruct, used when the model is not
# on local disk and the recipe does not set data.mm_processor_kwargs (each family's: frame.py).
QWEN2_5_VL_PROCESSOR_MIN_PIXELS = QWEN2_5_VL.processor_min_pixels
QWEN2_5_VL_PROCESSOR_MAX_PIXELS = QWEN2_5_VL.processor_max_pixels

# Token estimate when no tokenizer is available: Qwen2.5's BPE averages about 4 UTF-8 bytes per
# token on English; 2 bytes per token over-counts on purpose. The template overhead covers the
# default system prompt, the role markers and <|vision_start|>/<|vision_end|>.
ESTIMATE_BYTES_PER_TOKEN = 2
ESTIMATE_TEMPLATE_TOKENS = 48
VISION_MARKER_TOKENS = 2  # <|vision_start|> and <|vision_end|> around the image pads

DEFAULT_SAMPLE_ROWS = 8


@dataclass(frozen=True)
class Problem:
    """One failed check. ``setting`` is what the user changes (a Hydra key or an env variable)."""

    setting: str
    message: str

    def __str__(self) -> str:
        return f"[{self.setting}] {self.message}"


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, setting: str, message: str) -> None:
        self.problems.append(Problem(setting, message))

    @property
    def ok(self) -> bool:
        return not self.problems


# ----------------------------------------------------------------------------------------------
# composition


def verl_config_dir() -> str:
    from verl.trainer import main_ppo

    return os.path.join(os.path.dirname(main_ppo.__file__), "config")


def compose(overrides: Sequence[str]):
    """The config ``python -m verl.trainer.main_ppo <overrides>`` runs with (unresolved DictConfig)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=list(overrides))


def print_job_config(overrides: Sequence[str]) -> None:
    """Print the composed config through verl's own Hydra entry point (``main_ppo ... --cfg job``)."""
    from verl.trainer import main_ppo

    argv = sys.argv
    sys.argv = ["verl.trainer.main_ppo", *overrides, "--cfg", "job"]
    try:
        main_ppo.main()
    finally:
        sys.argv = argv


def _resolved(cfg):
    from omegaconf import OmegaConf

    cfg = cfg.copy()
    OmegaConf.resolve(cfg)
    return cfg


# ----------------------------------------------------------------------------------------------
# verl's own validation


def check_verl(cfg, report: Report) -> None:
    """``validate_config`` as main_ppo runs it, then verl's dataclasses section by section."""
    import warnings

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        use_critic = need_critic(cfg)
    try:
        validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=use_critic)
    except Exception as exc:  # verl raises AssertionError, ValueError or TypeError
        report.add("verl validate_config", f"{type(exc).__name__}: {exc}")

    from omegaconf import open_dict

    rcfg = _resolved(cfg)
    arr = rcfg.actor_rollout_ref
    # The reference worker's section, renamed the way verl's engine worker renames it before
    # building its ActorConfig (verl/workers/engine_workers.py).
    ref = arr.ref.copy()
    with open_dict(ref):
        ref.ppo_mini_batch_size = arr.actor.ppo_mini_batch_size
        ref.ppo_micro_batch_size = ref.pop("log_prob_micro_batch_size", None)
        ref.ppo_micro_batch_size_per_gpu = ref.pop("log_prob_micro_batch_size_per_gpu", None)
        ref.use_dynamic_bsz = ref.pop("log_prob_use_dynamic_bsz", False)
        ref.ppo_max_token_len_per_gpu = ref.pop("log_prob_max_token_len_per_gpu", None)
    sections = {
        "actor_rollout_ref.rollout": arr.rollout,
        "actor_rollout_ref.ref": ref,
        "algorithm": rcfg.algorithm,
    }
    for key, node in sections.items():
        try:
            omega_conf_to_dataclass(node)
        except Exception as exc:
            report.add(key, f"verl's dataclass rejects this section: {type(exc).__name__}: {exc}")

    # reward.reward_manager is validated by check_reward_manager (verl keeps it a DictConfig).
    model_path = str(arr.model.path)
    if os.path.isdir(os.path.expanduser(model_path)):
        try:
            omega_conf_to_dataclass(arr.model)
        except Exception as exc:
            report.add("actor_rollout_ref.model", f"verl's HFModelConfig rejects it: {type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------------------------
# plugin pieces


def _load_plugin_entry_point() -> Exception | None:
    """Import the ``verl.plugins`` entry point ourselves: verl swallows its import errors."""
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="verl.plugins") if ep.name == "perception"]
    if not eps:
        return LookupError("no 'perception' entry point in group 'verl.plugins' (is verl-perception installed?)")
    try:
        eps[0].load()
    except Exception as exc:
        return exc
    return None


def check_reward_manager(cfg, report: Report) -> None:
    rm = cfg.reward.reward_manager
    if rm.source == "register":
        plugin_error = _load_plugin_entry_point()
        from verl.experimental.reward_loop.reward_manager.registry import REWARD_MANAGER

        if rm.name not in REWARD_MANAGER:
            why = f"; the plugin failed to import: {type(plugin_error).__name__}: {plugin_error}" if plugin_error else ""
            report.add(
                "reward.reward_manager.name",
                f"reward manager {rm.name!r} is not registered (registered: {sorted(REWARD_MANAGER)}){why}",
            )
            return
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    try:
        resolve_reward_manager_cls(cfg)
    except Exception as exc:
        report.add("reward.reward_manager", f"verl cannot resolve the reward manager: {type(exc).__name__}: {exc}")


def check_reward_options(cfg, report: Report) -> None:
    from verl_perception.rewards.config import RewardConfig

    kwargs = cfg.reward.get("reward_kwargs")
    try:
        RewardConfig.from_mapping(kwargs)
    except Exception as exc:
        report.add("reward.reward_kwargs", str(exc))


def check_dataset_adapter(cfg, report: Report) -> None:
    from verl.utils.dataset.rl_dataset import get_dataset_class

    custom = cfg.data.get("custom_cls") or {}
    try:
        get_dataset_class(cfg.data)
    except Exception as exc:
        report.add(
            "data.custom_cls",
            f"dataset class {custom.get('name')!r} from {custom.get('path')!r} does not resolve: "
            f"{type(exc).__name__}: {exc}",
        )


# ----------------------------------------------------------------------------------------------
# data files, frame and prompt budget


@dataclass(frozen=True)
class PixelBounds:
    """The pixel bounds of the processor that resizes images at train and rollout time."""

    min_pixels: int
    max_pixels: int
    source: str  # where they came from, for messages
    factor: int = DEFAULT_FRAME.factor  # the model family's resize factor (one image token per factor²)

    @property
    def max_image_tokens(self) -> int:
        return self.max_pixels // (self.factor**2)


@dataclass(frozen=True)
class Row:
    """What the checks need from one parquet row."""

    file: str
    index: int
    data_source: str
    orig_size: tuple[int, int] | None
    input_size: tuple[int, int] | None
    images: tuple[dict, ...]
    messages: tuple[dict, ...]
    stated_bounds: tuple[int | None, int | None] = (None, None)  # min/max_pixels the parquet was made with
    model_family: str | None = None  # extra_info.model_family (None: written before families, Qwen2.5-VL)


def _as_list(files) -> list[str]:
    if files is None:
        return []
    if isinstance(files, str):
        return [files]
    return [str(f) for f in files]


def _size(v) -> tuple[int, int] | None:
    if v is None:
        return None
    v = list(v)
    return (int(v[0]), int(v[1])) if len(v) == 2 else None


def read_rows(path: str, n: int) -> list[Row]:
    """The first ``n`` rows of a parquet file (only the first row group is read)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    wanted = [c for c in ("data_source", "prompt", "images", "extra_info") if c in pf.schema_arrow.names]
    batch = next(pf.iter_batches(batch_size=n, columns=wanted), None)
    if batch is None:
        return []
    rows = []
    for i, rec in enumerate(batch.to_pylist()):
        extra = rec.get("extra_info") or {}
        msgs = rec.get("prompt")
        if isinstance(msgs, str):
            msgs = json.loads(msgs)
        images = tuple(im for im in (rec.get("images") or []) if isinstance(im, Mapping))
        first = images[0] if images else {}
        stated = tuple(
            (int(v) if v is not None else None)
            for v in (extra.get(k, first.get(k)) for k in ("min_pixels", "max_pixels"))
        )
        rows.append(
            Row(
                file=path,
                index=i,
                data_source=str(rec.get("data_source")),
                orig_size=_size(extra.get("orig_size")),
                input_size=_size(extra.get("input_size")),
                images=images,
                messages=tuple(msgs or ()),
                stated_bounds=stated,
                model_family=extra.get("model_family"),
            )
        )
    return rows


def required_columns(cfg) -> dict[str, str]:
    """``{column: who reads it}`` for every parquet a run reads."""
    return {
        "data_source": "verl and the reward manager (it selects the task)",
        str(cfg.data.get("prompt_key", "prompt")): "verl's dataset (data.prompt_key)",
        str(cfg.data.get("image_key", "images")): "verl's dataset (data.image_key): without it the model sees no image",
        "reward_model": "the reward manager (reward_model.ground_truth)",
        "extra_info": "the dataset adapter and the rewards (input_size, model_family)",
    }


def check_columns(key: str, path: str, cfg, report: Report) -> None:
    """The parquet at ``path`` has every column of :func:`required_columns` (and
    ``reward_model.ground_truth``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    missing = [(c, who) for c, who in required_columns(cfg).items() if c not in schema.names]
    if "reward_model" in schema.names:
        rm = schema.field("reward_model").type
        if not (pa.types.is_struct(rm) and rm.get_field_index("ground_truth") >= 0):
            missing.append(("reward_model.ground_truth", "the reward manager"))
    for column, who in missing:
        report.add(key, f"{path} has no {column!r} column, which {who} reads: re-run data_preprocess/ for it")


def check_data_files(cfg, report: Report) -> dict[str, list[str]]:
    files = {"data.train_files": _as_list(cfg.data.train_files), "data.val_files": _as_list(cfg.data.val_files)}
    for key, paths in files.items():
        if not paths:
            report.add(key, "no parquet file given (set DATA_DIR or the key itself)")
        for p in paths:
            if "://" in p:  # hdfs:// and friends: verl copies them at start-up, nothing to read here
                continue
            if not os.path.isfile(os.path.expanduser(p)):
                report.add(key, f"parquet file not found: {p} (set DATA_DIR, or preprocess with data_preprocess/)")
    return files


def _processor_config_bounds(model_path: str) -> tuple[tuple[int, int], str] | None:
    """``((min_pixels, max_pixels), file)`` of a local model's image processor, or None.

    Reads ``preprocessor_config.json`` (flat, as the Qwen2.5-VL checkpoints ship it) or, as
    transformers 5 saves processors, ``processor_config.json`` under ``image_processor``.
    """
    root = os.path.expanduser(model_path)
    for name, section in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            pc = json.load(f)
        if section is not None:
            pc = pc.get(section) or {}
        size = pc.get("size") or {}
        lo = pc.get("min_pixels", size.get("shortest_edge", size.get("min_pixels")))
        hi = pc.get("max_pixels", size.get("longest_edge", size.get("max_pixels")))
        if lo is not None and hi is not None:
            return (int(lo), int(hi)), path
    return None


def _processor_patch_size(model_path: str) -> tuple[int, str] | None:
    """``(patch_size, file)`` of a local model's image processor, or None."""
    root = os.path.expanduser(model_path)
    for name, section in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        path = os.path.join(root, name)
        if os.path.isfile(path):
            with open(path) as f:
                pc = json.load(f)
            patch = (pc.get(section) or {} if section else pc).get("patch_size")
            if patch is not None:
                return int(patch), path
    return None


def check_model_family(cfg, rows: Sequence[Row], report: Report, pending_model: bool = False) -> FrameSpec:
    """The run's model family, checked against the local processor and the parquet rows.

    ``data.perception_model_family`` when set, else the model's (``config.json`` ``model_type``, or
    its hub name), else the rows' (a model produced by an earlier stage), else Qwen2.5-VL.
    """
    model_path = str(cfg.actor_rollout_ref.model.path)
    model_spec, how = None, ""
    missing = _local_path(model_path) and not os.path.exists(os.path.expanduser(model_path))
    if not pending_model and not missing:  # a missing local path is check_model_path's problem
        try:
            model_spec, how = family_of_model(os.path.expanduser(model_path)), f"of {model_path}"
        except (UnknownFamilyError, OSError, ValueError) as exc:
            report.notes.append(f"model family: {exc}")
    named = cfg.data.get("perception_model_family")
    spec = None
    if named:
        try:
            spec, how = get_family(str(named)), "data.perception_model_family"
        except UnknownFamilyError as exc:
            report.add("data.perception_model_family", str(exc))
        if spec is not None and model_spec is not None and spec is not model_spec:
            report.add("data.perception_model_family", f"{spec.name}, but {model_path} is a {model_spec.name} model")
    spec = spec or model_spec
    row_families = {}
    for row in rows:
        try:
            fam = get_family(row.model_family) if row.model_family else LEGACY_FAMILY
        except UnknownFamilyError as exc:
            report.add("data preprocessing (--model-family)", f"{row.file} row {row.index}: {exc}")
            continue
        row_families.setdefault(fam.name, (fam, row))
    if spec is None:
        spec = next(iter(row_families.values()))[0] if row_families else DEFAULT_FRAME
        how = "of the parquet rows" if row_families else "the default"
    for name, (fam, row) in row_families.items():
        if fam is not spec:
            report.add(
                "data preprocessing (--model-family)",
                f"{row.file} row {row.index}: the parquet was preprocessed for {name} (factor {fam.factor}, "
                f"{fam.coords} coordinates) but the model is {spec.name} ({how}): re-run data_preprocess/ "
                f"with --model-family {spec.name}",
            )
    patch = None if pending_model else _processor_patch_size(model_path)
    if patch is not None and patch[0] != spec.patch_size:
        report.add(
            "MODEL_PATH (actor_rollout_ref.model.path)",
            f"{patch[1]}: image patch size {patch[0]}, but the {spec.name} family's is {spec.patch_size}",
        )
    report.notes.append(f"model family: {spec.name} ({how}; factor {spec.factor}, {spec.coords} coordinates)")
    return spec


def effective_pixel_bounds(cfg, report: Report, frame: FrameSpec = DEFAULT_FRAME) -> PixelBounds:
    """Bounds the processor applies: ``data.mm_processor_kwargs`` (threaded by verl to the dataset
    and to the rollout server) over the model's ``preprocessor_config.json`` (over the family's
    published processor defaults when the model is not on local disk)."""
    kw = cfg.data.get("mm_processor_kwargs") or {}
    model_path = str(cfg.actor_rollout_ref.model.path)
    found = _processor_config_bounds(model_path)
    if found is None:
        base, base_src = (frame.processor_min_pixels, frame.processor_max_pixels), (
            f"{frame.name}'s published processor defaults (model not on local disk)"
        )
    else:
        base, base_src = found
    lo = kw.get("min_pixels", base[0])
    hi = kw.get("max_pixels", base[1])
    from_kw = [k for k in ("min_pixels", "max_pixels") if k in kw]
    src = base_src if not from_kw else (
        "data.mm_processor_kwargs" if len(from_kw) == 2 else f"data.mm_processor_kwargs.{from_kw[0]} and {base_src}"
    )
    lo, hi = int(lo), int(hi)
    if lo > hi:
        report.add("data.mm_processor_kwargs.min_pixels", f"min_pixels={lo} exceeds max_pixels={hi}")
    return PixelBounds(lo, hi, src, frame.factor)


def _decode(image: Mapping) -> Any:
    from PIL import Image

    if image.get("bytes") is not None:
        return Image.open(BytesIO(image["bytes"]))
    path = image.get("image") or image.get("path")
    if isinstance(path, str):
        return Image.open(path.removeprefix("file://"))
    return None


def model_frame(image: Mapping, bounds: PixelBounds, frame: FrameSpec = DEFAULT_FRAME) -> tuple[int, int]:
    """``(h, w)`` of the image the model sees: verl's ``process_image`` on the stored image dict
    (qwen-vl-utils ``fetch_image``, honouring pinned sizes and bounds in the dict), then the
    processor's own resize with the effective bounds."""
    from verl.utils.dataset.vision_utils import process_image

    ele = {k: v for k, v in image.items() if v is not None}
    if "bytes" in ele and "image" in ele:
        ele.pop("image")
    fetched = process_image(ele, image_patch_size=frame.factor // 2)
    w, h = fetched.size
    return frame.input_size(h, w, bounds.min_pixels, bounds.max_pixels)


def check_frames(
    rows: Sequence[Row],
    bounds: PixelBounds,
    report: Report,
    repin: tuple[int, int] | None = None,
    frame: FrameSpec = DEFAULT_FRAME,
) -> None:
    """The frame the model sees equals the ground truth's frame, and the stated bounds agree.

    ``repin``: the dataset adapter's ``data.perception_min/max_pixels``, which re-pin every image to
    ``frame.input_size(orig_size, *repin)`` (and move the ground truth with it) at load time.
    """
    bad_frames = []
    stated_seen: set[tuple[str, int]] = set()
    for row in rows:
        where = f"{row.file} row {row.index} ({row.data_source})"
        if row.input_size is None:
            report.add("data preprocessing", f"{where}: extra_info.input_size is missing; re-run data_preprocess/")
            continue
        target = row.input_size
        images = row.images
        if repin is not None and row.orig_size is not None:
            target = frame.input_size(*row.orig_size, *repin)
            images = tuple({**im, "resized_height": target[0], "resized_width": target[1]} for im in images)
        for key, stated, val in zip(("min_pixels", "max_pixels"), row.stated_bounds, (bounds.min_pixels, bounds.max_pixels)):
            if repin is None and stated is not None and stated != val and (key, stated) not in stated_seen:
                stated_seen.add((key, stated))
                report.add(
                    f"{key.upper()} (data.mm_processor_kwargs.{key})",
                    f"{where}: the parquet was preprocessed with {key}={stated} but the recipe's "
                    f"processor uses {key}={val} ({bounds.source}); set {key.upper()}={stated} "
                    f"or re-run preprocessing with --{key.replace('_', '-')} {val}",
                )
        for image in images[:1]:
            try:
                seen = model_frame(image, bounds, frame)
            except Exception as exc:
                report.add("data preprocessing", f"{where}: stored image cannot be decoded: {type(exc).__name__}: {exc}")
                continue
            if seen != target:
                made = repin if repin is not None else row.stated_bounds
                bad_frames.append((where, seen, target, row.orig_size, made))
    for where, seen, stored, orig, made in bad_frames[:3]:
        made_with = "" if None in made else f" (min_pixels={made[0]}, max_pixels={made[1]})"
        report.add(
            "MIN_PIXELS/MAX_PIXELS (data.mm_processor_kwargs)",
            f"{where}: the model would see a {seen[0]}x{seen[1]} image but the ground truth is in the "
            f"{stored[0]}x{stored[1]} frame (original {orig}); the processor bounds "
            f"[{bounds.min_pixels}, {bounds.max_pixels}] ({bounds.source}) disagree with the bounds the "
            f"frames were made with{made_with}: set MIN_PIXELS/MAX_PIXELS to those, or re-run preprocessing "
            f"with --min-pixels {bounds.min_pixels} --max-pixels {bounds.max_pixels}",
        )
    if len(bad_frames) > 3:
        report.notes.append(f"{len(bad_frames) - 3} more rows with the same frame mismatch")


def _text_messages(messages: Sequence[Mapping]) -> list[dict]:
    out = []
    for m in messages:
        content = m.get("content", "")
        if isinstance(content, list):  # structured content: keep the text parts
            content = "".join(str(c.get("text", "")) for c in content if isinstance(c, Mapping))
        out.append({"role": m.get("role", "user"), "content": str(content).replace("<image>", "")})
    return out


def load_local_tokenizer(model_path: str):
    """The model's tokenizer if it is on local disk (a directory or the HF cache), else None."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(os.path.expanduser(model_path), local_files_only=True)
    except Exception:
        return None


def instruction_tokens(messages: Sequence[Mapping], tokenizer=None) -> tuple[int, str]:
    """Prompt tokens other than the image pads: ``(count, how it was counted)``."""
    text_msgs = _text_messages(messages)
    if tokenizer is not None:
        try:
            ids = tokenizer.apply_chat_template(text_msgs, add_generation_prompt=True, tokenize=True)
            if isinstance(ids, Mapping) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return len(ids) + VISION_MARKER_TOKENS, "counted with the model's tokenizer"
        except Exception:
            pass
    n_bytes = sum(len(m["content"].encode("utf-8")) for m in text_msgs)
    return math.ceil(n_bytes / ESTIMATE_BYTES_PER_TOKEN) + ESTIMATE_TEMPLATE_TOKENS, "estimated (no local tokenizer)"


def check_prompt_length(cfg, rows: Sequence[Row], bounds: PixelBounds, report: Report, tokenizer=None) -> None:
    budget = int(cfg.data.max_prompt_length)
    worst = None
    for row in rows:
        n_text, how = instruction_tokens(row.messages, tokenizer)
        need = n_text + max(1, len(row.images)) * bounds.max_image_tokens
        if worst is None or need > worst[0]:
            worst = (need, n_text, how, row)
    if worst is None:
        return
    need, n_text, how, row = worst
    if need > budget:
        report.add(
            "data.max_prompt_length",
            f"{need} prompt tokens may be needed ({bounds.max_image_tokens} image tokens = max_pixels "
            f"{bounds.max_pixels} / {bounds.factor}² + {n_text} instruction tokens, {how}; "
            f"{row.file} row {row.index}) but data.max_prompt_length={budget}: raise it to at least "
            f"{need}, or lower MAX_PIXELS",
        )
    report.notes.append(
        f"prompt budget: {need} of {budget} tokens ({bounds.max_image_tokens} image + {n_text} text, {how})"
    )


# ----------------------------------------------------------------------------------------------
# batch and token budgets


GPU_SETTINGS = {
    "n_gpus_per_node": "N_GPUS_PER_NODE (trainer.n_gpus_per_node)",
    "nnodes": "NNODES (trainer.nnodes)",
}


def positive_int(value: Any) -> int | None:
    """``value`` as a positive integer (an int, or a string of digits as a shell passes it), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value) or None
    if isinstance(value, float) and value.is_integer() and value > 0:
        return int(value)
    return None


def check_gpu_counts(cfg, report: Report) -> bool:
    """``trainer.n_gpus_per_node`` and ``trainer.nnodes`` are positive integers; False when not
    (the checks that divide by them are then skipped)."""
    ok = True
    for key, setting in GPU_SETTINGS.items():
        value = cfg.trainer.get(key)
        if positive_int(value) is None:
            ok = False
            report.add(setting, f"must be a positive integer (GPUs per node / nodes), got {value!r}")
    return ok


def check_batches(cfg, report: Report) -> None:
    n_gpus = int(cfg.trainer.n_gpus_per_node) * int(cfg.trainer.nnodes)
    actor = cfg.actor_rollout_ref.actor
    rollout = cfg.actor_rollout_ref.rollout
    samples = int(cfg.data.train_batch_size) * int(rollout.n)
    if n_gpus > 0 and samples % n_gpus:
        report.add(
            "data.train_batch_size",
            f"train_batch_size x rollout.n = {samples} responses cannot be split evenly over "
            f"{n_gpus} GPUs (N_GPUS_PER_NODE x NNODES); pick a train_batch_size with "
            f"train_batch_size x {int(rollout.n)} divisible by {n_gpus}",
        )
    mini = int(actor.ppo_mini_batch_size)
    if int(cfg.data.train_batch_size) % mini:
        report.add(
            "actor_rollout_ref.actor.ppo_mini_batch_size",
            f"data.train_batch_size={int(cfg.data.train_batch_size)} is not a multiple of ppo_mini_batch_size={mini}",
        )
    seq = int(cfg.data.max_prompt_length) + int(cfg.data.max_response_length)
    if actor.use_dynamic_bsz and int(actor.ppo_max_token_len_per_gpu) < seq:
        report.add(
            "actor_rollout_ref.actor.ppo_max_token_len_per_gpu",
            f"{int(actor.ppo_max_token_len_per_gpu)} tokens cannot hold one sequence of "
            f"max_prompt_length + max_response_length = {seq}",
        )
    tp = int(rollout.tensor_model_parallel_size)
    if tp < 1 or int(cfg.trainer.n_gpus_per_node) % tp:
        report.add(
            "actor_rollout_ref.rollout.tensor_model_parallel_size",
            f"{tp} does not divide N_GPUS_PER_NODE={int(cfg.trainer.n_gpus_per_node)}",
        )


# The samplers that apply verl's own dynamic sampling (verl_perception.replay_buffer); a custom sampler of
# someone else's gets no algorithm.filter_groups arguments from verl 0.9.1.
PERCEPTION_SAMPLERS = ("PerceptionReplayBuffer", "PerceptionReplayBufferAsync")
PERCEPTION_SAMPLER_PATH = "pkg://verl_perception.replay_buffer"


def check_dynamic_sampling(cfg, report: Report) -> None:
    """``algorithm.filter_groups`` (dynamic sampling): what verl would ignore or fail on minutes into a run.

    verl 0.9.1's V1 trainer applies it in its own replay buffers and in ours, never in another custom
    sampler; its V1 buffers ignore ``max_num_gen_batches`` (only a warning); the metric must be one the
    rollouts carry (``reward``, or a key of our reward manager's ``reward_extra_info``); a colocated reward
    model scores after sampling, too late to filter.
    """
    from verl_perception.reward_manager import EXTRA_INFO_KEYS

    groups = cfg.algorithm.get("filter_groups") or {}
    if not groups.get("enable", False):
        return
    setting = "algorithm.filter_groups"
    sampler = cfg.trainer.get("v1", {}).get("sampler", {}).get("custom_sampler") or {}
    path, name = sampler.get("path"), sampler.get("name")
    if path and name and (path != PERCEPTION_SAMPLER_PATH or name not in PERCEPTION_SAMPLERS):
        report.add(setting, f"dynamic sampling is on but the custom sampler {path}:{name} gets none of its "
                            "settings from verl 0.9.1 and would not apply it: use "
                            f"trainer.v1.sampler.custom_sampler.path={PERCEPTION_SAMPLER_PATH} (name "
                            f"{' or '.join(PERCEPTION_SAMPLERS)}), verl's built-in buffer (no custom_sampler), or "
                            "algorithm.filter_groups.enable=False")
    metric = groups.get("metric")
    known = ("reward", *EXTRA_INFO_KEYS)
    if cfg.reward.reward_manager.get("name") == "perception" and metric not in known:
        report.add(f"{setting}.metric", f"{metric!r} is not a value the perception reward manager reports per "
                                        f"rollout: use one of {', '.join(known)} (score = reward, the recipes' choice)")
    if int(groups.get("max_num_gen_batches", 0) or 0) > 0:
        report.add(f"{setting}.max_num_gen_batches", "verl's V1 replay buffers ignore it: bound the extra "
                                                     "generation with algorithm.filter_groups.max_inflight_gen_batches "
                                                     "instead and set max_num_gen_batches=0")
    reward_model = cfg.reward.get("reward_model") or {}
    if reward_model.get("enable", False) and not reward_model.get("enable_resource_pool", False):
        report.add(f"{setting}.enable", "a colocated reward model scores rollouts only after sampling, so groups "
                                        "cannot be filtered: set reward.reward_model.enable_resource_pool=True or "
                                        "turn dynamic sampling off")


# ----------------------------------------------------------------------------------------------
# the machine: GPUs and the modules verl will import after Ray starts

# The packed attention implementation this package registers (verl_perception.packed_attention.NAME; named
# here so that the checks need not import torch).
PACKED_ATTENTION = "flash_varlen_torch"

# Shown by every flash-attn problem: the overrides the recipes apply themselves with ATTN_IMPL=sdpa.
SDPA_OVERRIDES = (
    "actor_rollout_ref.model.use_remove_padding=False",
    "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
)

ROLLOUT_INSTALL = {
    "vllm": 'pip install "verl-perception[gpu]" (verl[vllm]: vLLM 0.24.0, torch 2.11.0)',
    "sglang": 'pip install "verl[sglang]"',
}


def module_installed(name: str) -> bool:
    """Whether ``import name`` would find the module (without importing heavy packages)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def visible_gpus() -> int:
    """CUDA devices this process sees (``CUDA_VISIBLE_DEVICES`` applied); 0 without torch or CUDA."""
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return 0


def attention_implementation(cfg) -> str:
    """What verl builds the FSDP actor with: ``model.override_config.attn_implementation``,
    flash_attention_2 when unset (verl's HFModelConfig default)."""
    override = cfg.actor_rollout_ref.model.get("override_config") or {}
    return str(override.get("attn_implementation", "flash_attention_2"))


def check_runtime(cfg, report: Report, *, gpus: int | None = None) -> None:
    """Problems that otherwise surface only inside Ray workers, minutes into a run."""
    nodes, per_node = int(cfg.trainer.nnodes), int(cfg.trainer.n_gpus_per_node)
    if nodes == 1:
        have = visible_gpus() if gpus is None else gpus
        if have == 0:
            report.add(
                "N_GPUS_PER_NODE (trainer.n_gpus_per_node)",
                f"the run asks for {per_node} GPU(s) but this machine has no visible CUDA device "
                "(torch.cuda.device_count() == 0): run on a GPU node, or check the config on CPU with DRY_RUN=1",
            )
        elif have < per_node:
            report.add(
                "N_GPUS_PER_NODE (trainer.n_gpus_per_node)",
                f"the run asks for {per_node} GPUs on 1 node but this machine has {have} visible CUDA "
                f"device(s): set N_GPUS_PER_NODE={have} (and batch sizes that split over {have}), or free "
                "the GPUs / fix CUDA_VISIBLE_DEVICES",
            )
    else:
        report.notes.append(f"{nodes} nodes: GPUs of the other nodes are counted by Ray, not here")

    if bool(cfg.trainer.get("use_v1", False)):
        if not module_installed("transfer_queue"):
            report.add(
                "trainer.use_v1",
                "verl's V1 trainer (its default) imports TransferQueue, which is not installed: "
                'pip install "verl[verl-core]" (included in verl-perception[verl]), or run the legacy '
                "trainer with trainer.use_v1=False",
            )
    rollout = str(cfg.actor_rollout_ref.rollout.name)
    if rollout in ROLLOUT_INSTALL and not module_installed(rollout):
        report.add(
            "actor_rollout_ref.rollout.name",
            f"the {rollout} rollout needs {rollout}, which is not installed: {ROLLOUT_INSTALL[rollout]}",
        )

    model = cfg.actor_rollout_ref.model
    attn = attention_implementation(cfg)
    if attn == PACKED_ATTENTION:
        if not module_installed("torch.nn.attention.varlen"):
            report.add(
                "ATTN_IMPL (actor_rollout_ref.model.override_config.attn_implementation)",
                f"{PACKED_ATTENTION} runs on torch.nn.attention.varlen (torch >= 2.10), which this torch lacks: "
                "upgrade torch (verl[vllm] brings 2.11), install flash-attn and use ATTN_IMPL=flash_attention_2, "
                f"or train with PyTorch sdpa: ATTN_IMPL=sdpa in the recipes, i.e. the overrides {' '.join(SDPA_OVERRIDES)}",
            )
        return
    needs_fa = [k for k, on in (
        ("actor_rollout_ref.model.use_remove_padding=True", bool(model.get("use_remove_padding", False))),
        (f"attn_implementation={attn}", attn == "flash_attention_2"),
    ) if on]
    if needs_fa and not module_installed("flash_attn"):
        report.add(
            "ATTN_IMPL (actor_rollout_ref.model.override_config.attn_implementation)",
            f"{' and '.join(needs_fa)} need flash-attn, which is not installed: install it for your CUDA and "
            'torch (e.g. pip install "verl[flash-attn-cu130torch211]"), use PyTorch\'s own flash kernel: '
            f"ATTN_IMPL={PACKED_ATTENTION} (torch >= 2.10), or train with PyTorch sdpa: "
            f"ATTN_IMPL=sdpa in the recipes, i.e. the overrides {' '.join(SDPA_OVERRIDES)}",
        )


def _local_path(path: str) -> bool:
    """A filesystem path rather than a hub name (``Qwen/Qwen2.5-VL-3B-Instruct``)."""
    return path.startswith(("/", "./", "../", "~")) or os.path.exists(os.path.expanduser(path))


def check_model_path(cfg, report: Report, pending_model: bool) -> None:
    path = str(cfg.actor_rollout_ref.model.path)
    if pending_model or not _local_path(path):
        return
    if not os.path.exists(os.path.expanduser(path)):
        report.add(
            "MODEL_PATH (actor_rollout_ref.model.path)",
            f"{path} does not exist: download the checkpoint there (huggingface-cli download <name> --local-dir "
            f"{path}), or give a hub name such as Qwen/Qwen2.5-VL-3B-Instruct",
        )
        return
    if not os.path.isfile(os.path.join(os.path.expanduser(path), "config.json")):
        report.add("MODEL_PATH (actor_rollout_ref.model.path)", f"{path} is not a Hugging Face model directory (no config.json)")


# ----------------------------------------------------------------------------------------------
# driver


def _guarded(report: Report, setting: str, check, *args) -> None:
    """Run one check; a value it cannot even read becomes a problem naming the setting, not a traceback."""
    try:
        check(*args)
    except Exception as exc:  # noqa: BLE001
        report.add(setting, f"cannot be checked: {type(exc).__name__}: {exc}")


def run_checks(
    cfg, *, sample_rows: int = DEFAULT_SAMPLE_ROWS, pending_model: bool = False, dry_run: bool = False
) -> Report:
    """Every check on a composed (unresolved) config; never raises for a failed check.

    ``dry_run``: the config is checked on another machine than the one that will train (a CPU
    laptop, CI), so the machine's problems become notes instead of failures.
    """
    report = Report()
    counts_ok = check_gpu_counts(cfg, report)  # the machine and batch checks divide by the counts
    if counts_ok and dry_run:
        machine = Report()
        _guarded(report, "the machine", check_runtime, cfg, machine)
        report.notes.extend(f"on this machine the run would fail: {p}" for p in machine.problems)
    elif counts_ok:
        _guarded(report, "the machine", check_runtime, cfg, report)
    _guarded(report, "verl validate_config", check_verl, cfg, report)
    _guarded(report, "reward.reward_manager", check_reward_manager, cfg, report)
    _guarded(report, "reward.reward_kwargs", check_reward_options, cfg, report)
    _guarded(report, "data.custom_cls", check_dataset_adapter, cfg, report)
    if counts_ok:
        _guarded(report, "data.train_batch_size", check_batches, cfg, report)
    _guarded(report, "algorithm.filter_groups", check_dynamic_sampling, cfg, report)
    check_model_path(cfg, report, pending_model)
    files = check_data_files(cfg, report)
    rows: list[Row] = []
    for key, paths in files.items():
        for p in paths:
            if os.path.isfile(os.path.expanduser(p)):
                try:
                    check_columns(key, os.path.expanduser(p), cfg, report)
                    rows.extend(read_rows(os.path.expanduser(p), sample_rows))
                except Exception as exc:
                    report.add(key, f"{p} is not a readable parquet file: {type(exc).__name__}: {exc}")
    family = check_model_family(cfg, rows, report, pending_model)
    bounds = effective_pixel_bounds(cfg, report, family)
    repin = None
    lo, hi = cfg.data.get("perception_min_pixels"), cfg.data.get("perception_max_pixels")
    if lo is not None or hi is not None:
        repin = (int(lo if lo is not None else family.min_pixels), int(hi if hi is not None else family.max_pixels))
    check_frames(rows, bounds, report, repin, family)
    tokenizer = None if pending_model else load_local_tokenizer(str(cfg.actor_rollout_ref.model.path))
    check_prompt_length(cfg, rows, bounds, report, tokenizer)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_perception.preflight",
        description="Check a verl GRPO command line before it reaches a GPU. Pass the exact Hydra "
        "overrides of `python -m verl.trainer.main_ppo` after `--`.",
    )
    parser.add_argument("--print-config", action="store_true", help="first print the composed config (main_ppo --cfg job)")
    parser.add_argument("--rows", type=int, default=DEFAULT_SAMPLE_ROWS, help="parquet rows read per file")
    parser.add_argument(
        "--pending-model",
        action="store_true",
        help="the model path is produced by an earlier stage that has not run yet (multi-stage dry runs)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="this machine will not train (DRY_RUN=1): report missing GPUs and modules as notes, not problems",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, after --")
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.print_config:
        print_job_config(args.overrides)
    try:
        cfg = compose(args.overrides)
    except Exception as exc:
        print(f"preflight: the config does not compose: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    # verl prints progress to stdout; keep stdout for the config alone (it may be piped to a file).
    with contextlib.redirect_stdout(sys.stderr):
        report = run_checks(cfg, sample_rows=args.rows, pending_model=args.pending_model, dry_run=args.dry_run)
    for note in report.notes:
        print(f"preflight: {note}", file=sys.stderr)
    if report.ok:
        print("preflight: all checks passed", file=sys.stderr)
        return 0
    print(f"preflight: {len(report.problems)} problem(s); change the named setting:", file=sys.stderr)
    for p in report.problems:
        print(f"  {p}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
