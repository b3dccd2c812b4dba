"""Start-up phases and per-step figures of a verl run, from its console log (benchmarks/grpo_step.sh).

    ... | python benchmarks/grpo_step_report.py --stamp > console.log   # prefix each line with [seconds]
    python benchmarks/grpo_step_report.py console.log [--json report.json] [--gpus N]

The stamped log gives the time of the first line of each start-up phase (:data:`PHASES`, verl's and vLLM's
own messages) and of each step line; verl's ``console`` logger gives the step figures (``timing_s/*``,
``perf/throughput`` = tokens per second per GPU, ``perf/mfu/actor``, ``perf/max_memory_*``, response
length). Exit status 1 when no step line was found.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verl_perception.training_logs import parse_console_line  # noqa: E402

STAMP = re.compile(r"^\[\s*(\d+\.\d)\] ")
# (phase, first line that marks its start): verl 0.9.1 and vLLM 0.24.0 messages, in run order.
PHASES = [
    ("preflight", r"verl_perception\.preflight|preflight:"),
    ("ray start", r"Started a local Ray instance|Connected to Ray cluster|ray\.init"),
    ("actor/ref build (FSDP)", r"Monkey patch Qwen\w+ForConditionalGeneration model forward"),
    ("vLLM engine start", r"vLLM API server version|Initializing a V1 LLM engine|Starting vLLM"),
    ("vLLM weights loaded", r"Model loading took|Loading weights took"),
    ("vLLM torch.compile done", r"torch\.compile takes .* in total|Compiling a graph for dynamic shape takes"),
    ("vLLM KV cache ready", r"Available KV cache memory|GPU KV cache size"),
    ("vLLM CUDA graph capture", r"Capturing CUDA graphs|Graph capturing finished in"),
    ("vLLM engine ready", r"init engine \(profile, create kv cache, warmup model\) took"),
    ("vLLM server up", r"Application startup complete|Uvicorn running"),
    ("actor and reference ready", r"actor and ref model engine initialized"),
    ("vLLM server process", r"vLLMHttpServer pid=\d+\)\S* \['serve'"),
    ("vLLM worker process", r"\(Worker pid=\d+\)"),
    ("checkpoint engine ready", r"checkpoint engine manager initialized"),
    ("training loop", r"all initialize finished, ready to fit"),
]
# vLLM's own durations, worth quoting as they are.
DURATIONS = [
    ("vLLM torch.compile", r"torch\.compile takes ([\d.]+) s in total"),
    ("vLLM CUDA graph capture", r"Graph capturing finished in ([\d.]+) sec"),
    ("vLLM engine init", r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) second"),
    ("vLLM weight load", r"Model loading took [\d.]+ Gi?B(?: memory)? and ([\d.]+) second"),
]
STEP_KEYS = ["timing_s/step", "timing_s/gen", "timing_s/old_log_prob", "timing_s/ref", "timing_s/update_actor",
             "timing_s/reward", "timing_s/adv", "timing_s/update_weights", "perf/throughput", "perf/mfu/actor",
             "actor/perf/max_memory_allocated_gb", "actor/perf/max_memory_reserved_gb", "perf/total_num_tokens",
             "response_length/mean", "prompt_length/mean", "response_length/clip_ratio"]


def stamp(stream_in, stream_out) -> None:
    """Copy lines, each prefixed with the seconds since this function started (one decimal)."""
    start = time.monotonic()
    for line in stream_in:
        stream_out.write(f"[{time.monotonic() - start:8.1f}] {line}")
        stream_out.flush()


def report(lines: list[str]) -> dict:
    phases, durations, steps, last = {}, {}, {}, 0.0
    for line in lines:
        m = STAMP.match(line)
        if not m:
            continue
        t, text = float(m.group(1)), line[m.end():]
        last = t
        for name, pattern in PHASES:
            if name not in phases and re.search(pattern, text):
                phases[name] = t
        for name, pattern in DURATIONS:
            found = re.search(pattern, text)
            if found:
                durations.setdefault(name, []).append(float(found.group(1)))
        record = parse_console_line(text)
        if record is not None:
            step, data = record
            steps[step] = {"t": t, **{k: data[k] for k in STEP_KEYS if k in data}}
    first_step = min(steps) if steps else None
    startup = None
    if first_step is not None:
        startup = steps[first_step]["t"] - steps[first_step].get("timing_s/step", 0.0)
    return {"phases_s": phases, "vllm_durations_s": durations, "startup_s": startup, "steps": steps,
            "log_end_s": last}


def print_report(rep: dict, gpus: int) -> None:
    print("start-up (seconds since the command started; first line of each phase):")
    for name, t in sorted(rep["phases_s"].items(), key=lambda kv: kv[1]):
        print(f"  {t:8.1f}  {name}")
    for name, values in rep["vllm_durations_s"].items():
        print(f"  vLLM says: {name} {', '.join(f'{v:.1f}' for v in values)} s")
    if rep["startup_s"] is not None:
        print(f"  start-up until step 1 began: {rep['startup_s']:.1f} s")
    if not rep["steps"]:
        print(f"no step finished (log ends at {rep['log_end_s']:.1f} s)")
        return
    cols = [("step", "timing_s/step"), ("gen", "timing_s/gen"), ("old_lp", "timing_s/old_log_prob"),
            ("ref", "timing_s/ref"), ("update", "timing_s/update_actor"), ("reward", "timing_s/reward"),
            ("sync", "timing_s/update_weights"), ("tok/s/GPU", "perf/throughput"), ("MFU", "perf/mfu/actor"),
            ("alloc GB", "actor/perf/max_memory_allocated_gb"), ("resv GB", "actor/perf/max_memory_reserved_gb"),
            ("resp len", "response_length/mean")]
    print("step " + " ".join(f"{c:>9}" for c, _ in cols))
    for step, data in sorted(rep["steps"].items()):
        cells = []
        for c, key in cols:
            v = data.get(key)
            cells.append(f"{'n/a':>9}" if v is None else (f"{v:9.1%}" if c == "MFU" else f"{v:9.1f}"))
        print(f"{step:>4} " + " ".join(cells))
    print(f"(perf/throughput is verl's tokens/s per GPU over the whole step; {gpus} GPU(s))")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log", nargs="?", help="stamped console log")
    parser.add_argument("--stamp", action="store_true", help="stamp stdin to stdout instead")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--gpus", type=int, default=1)
    args = parser.parse_args(argv)
    if args.stamp:
        stamp(sys.stdin, sys.stdout)
        return 0
    if not args.log:
        parser.error("give the stamped log (or --stamp)")
    with open(args.log, encoding="utf-8", errors="replace", newline="") as f:  # keep progress bars' \r in their line
        lines = f.read().split("\n")
    rep = report(lines)
    print_report(rep, args.gpus)
    if args.json:
        args.json.write_text(json.dumps(rep, indent=1))
    return 0 if rep["steps"] else 1


if __name__ == "__main__":
    sys.exit(main())
