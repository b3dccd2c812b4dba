"""Start-up, row throughput and memory of the dataset adapter against verl's own RLHFDataset (a benchmark, not a test).

Builds a COCO-train-like parquet through the project's preprocessing (``coco_detection.convert``:
synthetic JPEGs of COCO's sizes, 1-15 boxes per image, the 80-class detection instruction), then
measures :class:`verl_perception.dataset.PerceptionRLHFDataset` ("ours") and verl 0.9.1's
``RLHFDataset`` ("verl", the anchor) on that same parquet with the tiny offline Qwen2.5-VL processor
at the recipes' pixel bounds, each measurement in a fresh child process:

(a) construction with ``data.filter_overlong_prompts=True``, with 1 filter worker and with the
    recipe's ``data.filter_overlong_prompts_workers`` (verl's per-row filter runs at tens of rows/s,
    so it is timed on the first ``--anchor-rows`` rows; ours also on all rows);
(b) ``__getitem__`` rows/s on one core (random order, as verl's sampler draws), and through a
    ``DataLoader`` with the recipe's ``data.dataloader_num_workers`` and verl's ``collate_fn``;
(c) peak memory: the peak RSS (``VmHWM``) and the peak anonymous RSS (``RssAnon``, sampled; it
    leaves out the page cache of the memory-mapped Arrow file, which the kernel reclaims), after
    construction and a pass over every row, at ``--rows`` and at a quarter of it.

Exits 1 when a target is missed: construction with the filter >= 1,000 rows/s on one core;
``__getitem__`` >= 0.75x verl's on one core; peak anonymous RSS growing by < 1 KiB per row (no
whole-file loading).

    python benchmarks/dataset_throughput.py [--rows 20000] [--anchor-rows 200] [--dir DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON_SH = ROOT / "recipes" / "common.sh"
VERL_DEFAULT_FILTER_WORKERS = 1  # verl's data.filter_overlong_prompts_workers default
VERL_DEFAULT_LOADER_WORKERS = 8  # verl's data.dataloader_num_workers default
TRAIN_BATCH_SIZE = 14  # recipes/common.sh data.train_batch_size
GETITEM_ROUNDS = 4  # alternating rounds of the interleaved __getitem__ timing
SMALL_ANCHOR_ROWS = 10  # a second, small run of verl's filter separates its fixed cost from the per-row one

# Targets (the issue's): rows/s of construction with the length filter on one core, ours/verl
# __getitem__ on one core, and the growth of peak anonymous memory per row.
TARGET_FILTER_ROWS_PER_S = 1000.0
TARGET_GETITEM_RATIO = 0.75
TARGET_ANON_BYTES_PER_ROW = 1024.0

# (width, height) of COCO train2017's most frequent image sizes, with rough weights; the rest of
# the pool draws a 640 long side and a random short side, as most COCO images have.
COCO_SIZES = [((640, 480), 30), ((640, 427), 12), ((480, 640), 8), ((640, 426), 5), ((427, 640), 5),
              ((640, 425), 4), ((500, 375), 3), ((640, 360), 3), ((612, 612), 2), ((640, 640), 2)]
POOL_IMAGES = 96
CATEGORY_NAMES = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]


# ----------------------------------------------------------------------------------------------
# the parquet


def recipe_workers() -> tuple[int, int]:
    """``(data.filter_overlong_prompts_workers, data.dataloader_num_workers)`` as recipes/common.sh's
    full-size setup (``perception_grpo_args``, not the TINY mode) sets them."""
    text = COMMON_SH.read_text()
    start = text.index("perception_grpo_args() {")
    text = text[start:text.index("\n}\n", start)]
    f = re.search(r"data\.filter_overlong_prompts_workers=(\d+)", text)
    d = re.search(r"data\.dataloader_num_workers=(\d+)", text)
    return (int(f.group(1)) if f else VERL_DEFAULT_FILTER_WORKERS,
            int(d.group(1)) if d else VERL_DEFAULT_LOADER_WORKERS)


def pool_sizes(rng: random.Random) -> list[tuple[int, int]]:
    sizes, weights = zip(*COCO_SIZES)
    out = rng.choices(sizes, weights=weights, k=POOL_IMAGES // 2)
    for _ in range(POOL_IMAGES - len(out)):
        short = rng.randint(240, 640)
        out.append((640, short) if rng.random() < 0.7 else (short, 640))
    return out


def make_image(w: int, h: int, rng: random.Random) -> bytes:
    """A JPEG of COCO's byte size: random shapes over a noisy gradient (quality 90, like COCO's files)."""
    import numpy as np
    from PIL import Image, ImageDraw

    g = np.random.default_rng(rng.randrange(2**32))
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * g.uniform(0.2, 1.0, 3)
    arr = base + g.normal(0, 24, (h, w, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 15)):
        x1, y1 = rng.randrange(w - 8), rng.randrange(h - 8)
        x2, y2 = rng.randint(x1 + 4, w), rng.randint(y1 + 4, h)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x1, y1, x2, y2], fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def build_parquet(work: Path, rows: int, seed: int, model_family: str = "qwen2_5_vl", split: str = "train",
                  out: Path | None = None) -> Path:
    """``out/<split>.parquet`` (default ``work/coco_<rows>_<seed>/``) of ``rows`` COCO-like rows, made by the
    project's COCO preprocessing for ``model_family`` at its recipe pixel bounds (cached)."""
    from verl_perception.frame import get_family
    from verl_perception.preprocess import coco_detection

    family = get_family(model_family)
    out = out if out is not None else work / f"coco_{rows}_{seed}"
    parquet = out / f"{split}.parquet"
    if parquet.exists():
        return parquet
    rng = random.Random(seed)
    img_dir = work / f"images_{seed}"
    img_dir.mkdir(parents=True, exist_ok=True)
    pool = []
    for i, (w, h) in enumerate(pool_sizes(rng)):
        name = f"{i:03d}_{w}x{h}.jpg"
        if not (img_dir / name).exists():
            (img_dir / name).write_bytes(make_image(w, h, rng))
        pool.append((name, w, h))
    images, anns = [], []
    for image_id in range(1, rows + 1):
        name, w, h = pool[rng.randrange(len(pool))]
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for _ in range(rng.randint(1, 15)):
            bw, bh = rng.uniform(8, w / 2), rng.uniform(8, h / 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": rng.randint(1, 80),
                         "bbox": [round(x, 2), round(y, 2), round(bw, 2), round(bh, 2)], "iscrowd": 0})
    ann = work / f"instances_{rows}_{seed}.json"
    cats = [{"id": i, "name": n} for i, n in enumerate(CATEGORY_NAMES, start=1)]
    ann.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    t = time.perf_counter()
    summary = coco_detection.convert(ann, img_dir, out, split, min_pixels=family.min_pixels,
                                     max_pixels=family.max_pixels, model_family=family.name,
                                     workers=max(1, (os.cpu_count() or 2)), strict=True, progress=False)
    print(f"built {summary.rows_written} rows in {time.perf_counter() - t:.0f}s through "
          f"verl_perception.preprocess.coco_detection ({parquet.stat().st_size / 2**20:.0f} MiB)", flush=True)
    return parquet


# ----------------------------------------------------------------------------------------------
# measurements (each in a child process: fresh memory, fresh caches)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class AnonPeak:
    """Highest ``RssAnon`` seen at the calls of :meth:`sample` (the kernel keeps no peak of it)."""

    def __init__(self):
        self.kib = _status_kib("RssAnon")

    def sample(self) -> None:
        self.kib = max(self.kib, _status_kib("RssAnon"))


def child(args: argparse.Namespace) -> dict:
    """One measurement; prints its figures as one JSON line."""
    import datasets
    import torch
    from omegaconf import OmegaConf
    from transformers import AutoProcessor, AutoTokenizer
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    from verl_perception.dataset import PerceptionRLHFDataset

    datasets.disable_caching()  # a filter result reloaded from cache would time nothing
    datasets.disable_progress_bars()
    torch.set_num_threads(1)
    cls = PerceptionRLHFDataset if args.side == "ours" else RLHFDataset
    processor = AutoProcessor.from_pretrained(args.processor)
    tokenizer = AutoTokenizer.from_pretrained(args.processor)
    cfg = OmegaConf.create({
        "max_prompt_length": 2048, "truncation": "error", "cache_dir": str(Path(args.work) / "verl_cache"),
        "filter_overlong_prompts": args.filter, "filter_overlong_prompts_workers": args.filter_workers,
    })
    if args.side == "both":
        return interleaved(args, tokenizer, processor, cfg)
    peak = AnonPeak()
    t = time.perf_counter()
    ds = cls([args.parquet], tokenizer, cfg, processor=processor, max_samples=args.max_samples)
    out = {"construct_s": time.perf_counter() - t, "rows": len(ds)}
    peak.sample()
    if args.getitem:
        n = min(args.getitem, len(ds))
        order = random.Random(0).sample(range(len(ds)), n)
        t = time.perf_counter()
        for k, i in enumerate(order):
            ds[i]
            if k % 512 == 0:
                peak.sample()
        out["getitem_s"], out["getitem_rows"] = time.perf_counter() - t, n
        peak.sample()
    if args.loader_rows:
        from torch.utils.data import DataLoader, RandomSampler, Subset

        n = min(args.loader_rows, len(ds))
        sub = Subset(ds, list(range(n)))
        out["loader"] = {}
        for workers in (int(w) for w in args.loader_workers.split(",")):
            t = time.perf_counter()
            loader = DataLoader(sub, batch_size=TRAIN_BATCH_SIZE, num_workers=workers, collate_fn=collate_fn,
                                sampler=RandomSampler(sub, generator=torch.Generator().manual_seed(0)))
            got = sum(len(b["dummy_tensor"]) for b in loader)
            out["loader"][workers] = {"s": time.perf_counter() - t, "rows": got}
            peak.sample()
    out["vmhwm_kib"], out["anon_peak_kib"] = _status_kib("VmHWM"), peak.kib
    if args.side == "ours":
        out["frame_stats"] = dict(ds.frame_stats)
        out["length_filter"] = getattr(ds, "length_filter_stats", None)
    print(json.dumps(out), flush=True)
    return out


def interleaved(args, tokenizer, processor, cfg) -> dict:
    """``__getitem__`` of both classes on the same rows in one process, alternating rounds, so that a
    change of load on a shared machine hits both sides alike."""
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from verl_perception.dataset import PerceptionRLHFDataset

    ours = PerceptionRLHFDataset([args.parquet], tokenizer, cfg, processor=processor)  # filter on, as the recipes
    verl = RLHFDataset([args.parquet], tokenizer, OmegaConf.merge(cfg, {"filter_overlong_prompts": False}),
                       processor=processor)
    n = min(args.getitem, len(verl))
    order = random.Random(0).sample(range(len(verl)), n)
    seconds = {"ours": 0.0, "verl": 0.0}
    for rnd in range(GETITEM_ROUNDS):
        for name in (("ours", "verl") if rnd % 2 == 0 else ("verl", "ours")):
            ds = ours if name == "ours" else verl
            t = time.perf_counter()
            for i in order:
                ds[i]
            seconds[name] += time.perf_counter() - t
    out = {"getitem_rows": n * GETITEM_ROUNDS, "ours_s": seconds["ours"], "verl_s": seconds["verl"],
           "frame_stats": dict(ours.frame_stats)}
    print(json.dumps(out), flush=True)
    return out


def run_child(common: list[str], **kw) -> dict:
    cmd = [sys.executable, __file__, "--child", *common]
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            cmd.append(flag if v else f"--no-{k.replace('_', '-')}")
        elif v is not None:
            cmd += [flag, str(v)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        sys.exit(f"measurement {kw} failed:\n{res.stdout[-2000:]}\n{res.stderr[-6000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# driver


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20000, help="rows of the synthetic COCO-train parquet (default 20000)")
    p.add_argument("--anchor-rows", type=int, default=200,
                   help="rows for verl's per-row length filter, which runs at tens of rows/s (default 200)")
    p.add_argument("--getitem-rows", type=int, default=5000, help="rows drawn for the __getitem__ timings")
    p.add_argument("--dir", type=Path, default=None,
                   help="work directory, kept for the next run (default: a temporary one, removed)")
    p.add_argument("--seed", type=int, default=0)
    # child-only options
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--side", choices=("ours", "verl", "both"), help=argparse.SUPPRESS)
    p.add_argument("--parquet", help=argparse.SUPPRESS)
    p.add_argument("--processor", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--filter", action=argparse.BooleanOptionalAction, default=True, help=argparse.SUPPRESS)
    p.add_argument("--filter-workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--max-samples", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--getitem", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--loader-rows", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--loader-workers", default="0", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0

    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="dataset_bench_")
    work = (args.dir or Path(tmp.name)).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["HF_DATASETS_CACHE"] = str(work / "hf_datasets")
    cores = os.cpu_count() or 1
    filter_workers, loader_workers = recipe_workers()
    filter_workers_eff = min(filter_workers if filter_workers else max(1, cores // 4), cores)
    print(f"machine: {cores} cores; recipes/common.sh: filter_overlong_prompts_workers={filter_workers} "
          f"(verl caps it at the core count: {filter_workers_eff}), dataloader_num_workers={loader_workers}")

    from verl_perception.frame import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
    from verl_perception.tiny_model import build_tiny_processor

    proc_dir = work / f"tiny_processor_{DEFAULT_MIN_PIXELS}_{DEFAULT_MAX_PIXELS}"
    if not (proc_dir / "tokenizer_config.json").exists():
        build_tiny_processor(proc_dir, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
    parquet = build_parquet(work, args.rows, args.seed)
    common = ["--parquet", str(parquet), "--processor", str(proc_dir), "--work", str(work)]
    size = parquet.stat().st_size
    print(f"parquet: {args.rows} rows, {size / 2**20:.0f} MiB ({size / args.rows / 1024:.0f} KiB of JPEG per row), "
          f"pixel bounds [{DEFAULT_MIN_PIXELS}, {DEFAULT_MAX_PIXELS}], max_prompt_length 2048")

    t = time.perf_counter()
    run_child(common, side="verl", filter=False, max_samples=1)  # parquet -> Arrow cache, paid once per file
    print(f"Arrow conversion of the parquet (datasets.load_dataset, once per file, both sides): "
          f"{time.perf_counter() - t:.1f}s", flush=True)

    a = min(args.anchor_rows, args.rows)
    small = min(SMALL_ANCHOR_ROWS, a)
    loader_list = ",".join(str(w) for w in sorted({0, 2, loader_workers, VERL_DEFAULT_LOADER_WORKERS}))
    filter_counts = sorted({1, filter_workers_eff, cores})
    results: dict[str, dict] = {}
    for side in ("verl", "ours"):
        for w in filter_counts:
            results[f"{side}_filter{w}"] = run_child(common, side=side, filter=True, filter_workers=w, max_samples=a)
        results[f"{side}_small"] = run_child(common, side=side, filter=True, filter_workers=1, max_samples=small)
        results[f"{side}_rows"] = run_child(common, side=side, filter=False, getitem=args.getitem_rows,
                                            loader_rows=args.getitem_rows, loader_workers=loader_list)
        print(f"  measured {side}", flush=True)
    results["both_getitem"] = run_child(common, side="both", filter=True, filter_workers=1, getitem=args.getitem_rows)
    results["ours_full"] = run_child(common, side="ours", filter=True, filter_workers=1, getitem=args.rows)
    results["ours_quarter"] = run_child(common, side="ours", filter=True, filter_workers=1,
                                        max_samples=args.rows // 4, getitem=args.rows // 4)

    r = results
    failures = []

    def rate(rows, s):
        return rows / s if s > 0 else float("inf")

    print(f"\n(a) construction with the length filter (data.filter_overlong_prompts=True), first {a} rows")
    print(f"    {'':28}{'ours':>14}{'verl':>14}{'ours/verl':>11}")
    for w in filter_counts:
        o, v = r[f"ours_filter{w}"], r[f"verl_filter{w}"]
        ro, rv = rate(a, o["construct_s"]), rate(a, v["construct_s"])
        tag = " (recipe)" if w == filter_workers_eff else ""
        print(f"    {f'{w} filter worker(s){tag}, rows/s':28}{ro:>14,.0f}{rv:>14,.1f}{ro / rv:>10.0f}x"
              f"   ({o['construct_s'] * 1e3 / a:.2f} vs {v['construct_s'] * 1e3 / a:.1f} ms/row)")
    vs, v1 = r["verl_small"], r["verl_filter1"]
    per_row = (v1["construct_s"] - vs["construct_s"]) / max(1, a - small)
    print(f"    verl, 1 worker: {vs['construct_s']:.1f}s for {small} rows, {v1['construct_s']:.1f}s for {a}: about "
          f"{vs['construct_s'] - small * per_row:.0f}s fixed (datasets' fingerprint dill-pickles the filter's closure,"
          f" processor and tokenizer included) + {per_row * 1e3:.0f} ms/row")
    full = r["ours_full"]
    full_rate = rate(args.rows, full["construct_s"])
    print(f"    ours, all {args.rows} rows, 1 worker: {full['construct_s']:.1f}s = {full_rate:,.0f} rows/s "
          f"({full['rows']} kept); length filter: {full.get('length_filter')}")
    print(f"    at these rates COCO train2017 (117,266 rows) starts in {117266 / full_rate:,.0f}s (ours) vs "
          f"{(vs['construct_s'] + (117266 - small) * per_row) / 3600:.1f} h (verl, 1 worker)")
    if full_rate < TARGET_FILTER_ROWS_PER_S:
        failures.append(f"construction with the filter {full_rate:,.0f} rows/s < {TARGET_FILTER_ROWS_PER_S:,.0f}")

    o, v, b = r["ours_rows"], r["verl_rows"], r["both_getitem"]
    go, gv = rate(b["getitem_rows"], b["ours_s"]), rate(b["getitem_rows"], b["verl_s"])
    print(f"\n(b) __getitem__, {args.getitem_rows} rows in random order")
    print(f"    {'':28}{'ours':>14}{'verl':>14}{'ours/verl':>11}")
    print(f"    {'1 core, rows/s':28}{go:>14,.0f}{gv:>14,.0f}{go / gv:>11.2f}"
          f"   ({1e6 / go:.0f} vs {1e6 / gv:.0f} us/row; {GETITEM_ROUNDS} alternating rounds in one process)")
    so, sv = rate(o["getitem_rows"], o["getitem_s"]), rate(v["getitem_rows"], v["getitem_s"])
    print(f"    {'1 core, separate processes':28}{so:>14,.0f}{sv:>14,.0f}{so / sv:>11.2f}"
          f"   (one pass each, at different times: load on a shared machine moves this one)")
    for w in o["loader"]:
        lo, lv = (rate(x["loader"][w]["rows"], x["loader"][w]["s"]) for x in (o, v))
        tag = " (recipe)" if int(w) == loader_workers else ""
        print(f"    {f'DataLoader {w} workers{tag}, rows/s':28}{lo:>14,.0f}{lv:>14,.0f}{lo / lv:>11.2f}"
              f"   (batches of {TRAIN_BATCH_SIZE}, worker start-up included)")
    print(f"    ours' frame checks: {b.get('frame_stats')}")
    if go / gv < TARGET_GETITEM_RATIO:
        failures.append(f"__getitem__ {go / gv:.2f}x verl's < {TARGET_GETITEM_RATIO}x")

    q = r["ours_quarter"]
    grow = (full["anon_peak_kib"] - q["anon_peak_kib"]) * 1024 / max(1, full["rows"] - q["rows"])
    print("\n(c) peak memory, after construction with the filter and a pass over every row (ours)")
    print(f"    {q['rows']:>6} rows: peak RSS {q['vmhwm_kib'] / 1024:7.0f} MiB, peak anonymous {q['anon_peak_kib'] / 1024:6.0f} MiB")
    print(f"    {full['rows']:>6} rows: peak RSS {full['vmhwm_kib'] / 1024:7.0f} MiB, peak anonymous {full['anon_peak_kib'] / 1024:6.0f} MiB"
          f"  -> {grow:.0f} bytes of anonymous memory per extra row")
    print(f"    verl, {v['rows']} rows, {v['getitem_rows']} read: peak RSS {v['vmhwm_kib'] / 1024:.0f} MiB, "
          f"peak anonymous {v['anon_peak_kib'] / 1024:.0f} MiB; ours the same: "
          f"{o['vmhwm_kib'] / 1024:.0f} / {o['anon_peak_kib'] / 1024:.0f} MiB")
    print("    (peak RSS also counts the page cache of the memory-mapped Arrow file touched, which the kernel "
          "reclaims; the anonymous part is the process's own memory)")
    if grow > TARGET_ANON_BYTES_PER_ROW:
        failures.append(f"peak anonymous memory grows {grow:.0f} bytes per row > {TARGET_ANON_BYTES_PER_ROW:.0f}")

    if tmp:
        tmp.cleanup()
    if failures:
        print("\nTARGETS MISSED: " + "; ".join(failures))
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
