"""The `interp` command: run, train, report, tasks, info."""

from __future__ import annotations

import argparse
from pathlib import Path

from interp.base.console import say, table
from interp.base.errors import InputError


def _info(args: argparse.Namespace) -> int:
    from interp.model.info import devices, missing_known_models, offline_models, versions

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


def _run(args: argparse.Namespace) -> int:
    from interp.runner.config import load_config
    from interp.runner.run import run_experiment

    overrides = {
        k: v for k, v in (("source", args.model), ("device", args.device), ("dtype", args.dtype)) if v
    }
    config = load_config(args.config, model=overrides)  # the overrides validated as the file's fields
    options = _backend_options(args)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    results = run_experiment(
        config,
        out,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
        backend=args.backend,
        backend_options=options,
    )
    base = results["baseline"]
    say(
        f"{results['task']['name']} on {results['model']['source']}: {base['metric']} clean {base['clean']:.3f}, corrupted {base['corrupted']:.3f}"
    )
    say(f"results: {(out / 'results.json').resolve()}")
    say(f"report: {(out / 'report.html').resolve()}")
    return 0


def _backend_options(args: argparse.Namespace) -> dict:
    """The Ray backend's options from the command line; refused without `--backend ray`."""
    if args.backend == "ray":
        return {
            "address": args.address,
            "num_workers": args.num_workers,
            "gpus_per_worker": args.gpus_per_worker,
        }
    if args.address or args.num_workers != 2 or args.gpus_per_worker:
        raise InputError("--address, --num-workers and --gpus-per-worker need --backend ray")
    return {}


def _train(args: argparse.Namespace) -> int:
    from interp.runner.training_config import load_train_config
    from interp.runner.training_run import run_training

    overrides = {
        k: v for k, v in (("source", args.model), ("device", args.device), ("dtype", args.dtype)) if v
    }
    config = load_train_config(args.config, model=overrides)
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    summary = run_training(
        config,
        out,
        resume=args.resume,
        force=args.force,
        progress=not args.quiet,
        backend=args.backend,
        backend_options=_backend_options(args),
    )
    for name, entry in summary["dictionaries"].items():
        m = entry["metrics"]
        recovered = "n/a" if m["ce_loss_recovered"] is None else f"{m['ce_loss_recovered']:.3f}"
        say(
            f"{name}: {entry['architecture']} {entry['kind']} on {entry['hook']}, {entry['tokens_trained']} tokens; "
            f"explained variance {m['explained_variance']:.3f}, CE loss recovered {recovered}, L0 {m['l0']:.1f}"
        )
    say(f"dictionaries: {out.resolve()}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from interp.report.run_report import write_report

    say(f"report: {write_report(args.run_dir).resolve()}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    from interp.data.tasks.options import EVERY_TASK, TASK_OPTIONS, TaskConfig
    from interp.runner.kinds import REGISTRY
    from interp.runner.options import COMMON_OPTIONS, AnalysisOptions

    say("tasks (and the options each reads besides " + ", ".join(EVERY_TASK[1:]) + "):")
    table([(name, ", ".join(reads)) for name, reads in TASK_OPTIONS.items()])
    say("task options:")
    table([(name, field.description or "") for name, field in TaskConfig.model_fields.items()])
    say("analysis options of every kind:")
    table([(name, AnalysisOptions.model_fields[name].description or "") for name in COMMON_OPTIONS])
    say("analysis kinds and their options (= the default):")
    for kind, spec in REGISTRY.items():
        say(f"  {kind}: {spec.summary}")
        table([_option_row(spec.options, name) for name in spec.options.own_fields()], indent=4)
    return 0


def _option_row(model, name: str) -> tuple[str, str]:
    import json

    field = model.model_fields[name]
    if field.is_required():  # no default: the config must give it
        return (f"{name} (required)", field.description or "")
    default = field.get_default(call_default_factory=True)
    return (f"{name} = {'(unset)' if default is None else json.dumps(default)}", field.description or "")


def build_parser() -> argparse.ArgumentParser:
    """The `interp` command's argument parser (run, train, report, tasks, info)."""
    parser = argparse.ArgumentParser(prog="interp", description="The Phi-2 interpretability workbench.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an experiment config (TOML) and write results and a report")
    run.add_argument("config", help="experiment config, e.g. experiments/ioi.toml")
    run.add_argument("--model", help="override [model] source: toy, microsoft/phi-2, a directory, ...")
    run.add_argument("--device", help="override [model] device (auto, cpu, cuda, cuda:1, mps)")
    run.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], help="override [model] dtype")
    run.add_argument("--out", help="output directory (default runs/<config name>)")
    run.add_argument(
        "--resume", action="store_true", help="continue an interrupted run of this config in --out"
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="clear the run files of another or unknown run in --out and start again",
    )
    run.add_argument(
        "--backend", default="local", choices=["local", "ray"], help="where units run (default local)"
    )
    run.add_argument(
        "--address", help="ray: address of an existing cluster (default: start one on this machine)"
    )
    run.add_argument(
        "--num-workers", type=int, default=2, help="ray: number of actors, each loads the model once"
    )
    run.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per actor (e.g. 1)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)
    train = commands.add_parser(
        "train", help="train dictionaries (SAEs, transcoders) on a model's activations from a TOML config"
    )
    train.add_argument("config", help="training config, e.g. experiments/train_toy_dictionaries.toml")
    train.add_argument("--out", help="output directory (default runs/<config name>)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    train.add_argument("--force", action="store_true", help="clear another or unknown run in --out first")
    train.add_argument("--model", help="override [model] source")
    train.add_argument("--device", help="override [model] device (auto, cpu, cuda, cuda:1, mps)")
    train.add_argument("--dtype", choices=["auto", "float32", "bfloat16"], help="override [model] dtype")
    train.add_argument(
        "--backend",
        default="local",
        choices=["local", "ray"],
        help="local (one forward for all dictionaries) or ray (groups of dictionaries on actors)",
    )
    train.add_argument(
        "--address", help="ray: address of an existing cluster (default: start one on this machine)"
    )
    train.add_argument(
        "--num-workers",
        type=int,
        default=2,
        help="ray: at most this many actors, each a group of dictionaries on the same hooks",
    )
    train.add_argument("--gpus-per-worker", type=float, default=0.0, help="ray: GPUs per actor (e.g. 1)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_train)
    report = commands.add_parser("report", help="re-render report.html of a run directory from results.json")
    report.add_argument("run_dir", help="a directory written by `interp run`")
    report.set_defaults(handler=_report)
    tasks = commands.add_parser("tasks", help="list tasks, their options and the analysis kinds")
    tasks.set_defaults(handler=_tasks)
    info = commands.add_parser("info", help="versions, devices, and which models load offline")
    info.set_defaults(handler=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `interp`.

    Exit 0 on success; 2 with `error: ...` (what is wrong, the value, what is allowed) for a user
    error; 130 when interrupted (resume with --resume); 1 with the traceback for an internal error.
    `--debug` shows the traceback of user errors too.
    """
    import traceback

    from interp.base.console import warn
    from interp.base.errors import InterpError

    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except InterpError as error:
        if args.debug:
            traceback.print_exc()
        warn(str(error), prefix="error")
        return 2
    except KeyboardInterrupt:
        warn("interrupted; finished units are kept: rerun the same command with --resume", prefix="error")
        return 130
    except Exception:
        traceback.print_exc()
        warn(
            "internal error (the traceback above): this is a bug in interp or in its environment. "
            "Please report it with the command, the config and `interp info`.",
            prefix="error",
        )
        return 1
