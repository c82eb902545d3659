"""The `interp` command: `interp info`, `interp demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.console import say, table


def _info(args: argparse.Namespace) -> int:
    from interp.info import devices, missing_known_models, offline_models, versions

    say("versions:")
    table(list(versions().items()))
    say("devices: " + ", ".join(devices()))
    say("models that load offline:")
    table(offline_models())
    missing = missing_known_models()
    if missing:
        say("not in the local Hugging Face cache (download on a connected machine with `hf download ID`):")
        table([(hub_id,) for hub_id in missing])
    return 0


def _demo(args: argparse.Namespace) -> int:
    from interp.demo import run_demo

    run_demo(Path(args.out), args.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interp", description="The Phi-2 interpretability workbench.")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions, devices, and which models load offline")
    info.set_defaults(handler=_info)
    demo = commands.add_parser("demo", help="head scores and IOI behaviour of a model, as an HTML report")
    demo.add_argument("--model", default="toy", help="model source: toy (default), a hub id or a directory")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
