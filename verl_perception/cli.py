"""``verl-perception``: the console script (demo, generate, evaluate, curves)."""

from __future__ import annotations

import argparse
import importlib.util
import sys

# What each command imports beyond the base install (rewards and metrics need numpy/scipy only).
# A base install asks for the extra in one line instead of a traceback from deep inside a stage.
NEEDS = {
    "demo": ("torch", "torchvision", "transformers"),
    "generate": ("torch", "torchvision", "transformers"),
}
INSTALL_HINT = 'pip install "verl-perception[verl]"  (from a checkout: pip install -e ".[verl]")'


def missing_modules(command: str) -> list[str]:
    """Top-level modules ``command`` needs that are not installed."""
    return [m for m in NEEDS.get(command, ()) if importlib.util.find_spec(m) is None]


def build_parser() -> argparse.ArgumentParser:
    from verl_perception import curves, demo, evaluate, generate

    p = argparse.ArgumentParser(
        prog="verl-perception", description="Perception-R1 for verl: demo, generate, evaluate, curves"
    )
    sub = p.add_subparsers(dest="command", required=True)
    demo.build_parser(sub.add_parser("demo", help="the whole pipeline on the bundled samples, on CPU"))
    generate.build_parser(sub.add_parser("generate", help="answer a parquet with a model -> responses.jsonl"))
    evaluate.build_parser(sub.add_parser("evaluate", help="benchmark metrics + report from responses.jsonl"))
    curves.build_parser(sub.add_parser("curves", help="training curves per task from a run's logs or rollout dumps"))
    return p


def main(argv: list[str] | None = None) -> int:
    from verl_perception import curves, demo, evaluate, generate

    args = build_parser().parse_args(argv)
    missing = missing_modules(args.command)
    if missing:
        print(
            f"verl-perception {args.command} needs {', '.join(missing)}, which this install lacks: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2
    runner = {"demo": demo.run, "generate": generate.run, "evaluate": evaluate.run, "curves": curves.run}[
        args.command
    ]
    return runner(args)


if __name__ == "__main__":
    sys.exit(main())
