"""The `tuneforge` command: one subcommand per job.

    tuneforge train CFG [key=value ...]        validate, then train (for now: preprocess to tokenized_path)
    tuneforge data check CFG [key=value ...]   validate the datasets and print their report
    tuneforge chat CFG [key=value ...] [--message TEXT]   chat with the model (interactive, or one answer)
    tuneforge version
    tuneforge api | export | eval | webui        (arrive with later issues)

Heavy libraries are imported inside the commands, so `tuneforge --help` and `version` answer at once.
A mistake in the user's input (UserError) prints `error: <message>` and exits with 2, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import ConfigError, UserError

EXIT_USAGE = 2
PLANNED_COMMANDS = ("api", "export", "eval", "webui")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="[%(name)s] %(levelname)s: %(message)s")
    logging.getLogger("tuneforge").setLevel(logging.INFO)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneforge", description="Fine-tune open LLMs; runs "
                                     "LLaMA-Factory YAML configs and dataset_info.json unchanged.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    train = commands.add_parser("train", help="train from a YAML/JSON config (key=value overrides)")
    _add_config_arguments(train)
    train.set_defaults(handler=_cmd_train)

    data = commands.add_parser("data", help="dataset tools")
    data_commands = data.add_subparsers(title="data commands", metavar="DATA_COMMAND")
    check = data_commands.add_parser("check", help="validate the datasets of a config and print a report "
                                     "with token-length statistics, without training")
    _add_config_arguments(check)
    check.set_defaults(handler=_cmd_data_check)
    data.set_defaults(handler=lambda _args: _usage(data))

    chat = commands.add_parser("chat", help="chat with the model (+ adapter) of a config: interactive, or one "
                               "answer for --message TEXT or piped stdin")
    _add_config_arguments(chat)
    chat.add_argument("--message", metavar="TEXT", help="answer this one message on stdout and exit "
                      "(without it, a non-terminal stdin is read as the message)")
    chat.set_defaults(handler=_cmd_chat)

    version = commands.add_parser("version", help="print the versions of tuneforge and its library stack")
    version.set_defaults(handler=_cmd_version)

    for name in PLANNED_COMMANDS:
        planned = commands.add_parser(name, help="not implemented yet", add_help=False)
        planned.add_argument("rest", nargs=argparse.REMAINDER)
        planned.set_defaults(handler=_cmd_planned, command=name)
    return parser


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("args", nargs="*", metavar="CONFIG|key=value",
                        help="a .yaml/.json config file, then key=value overrides (e.g. learning_rate=5e-5)")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _split_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """The config path (the one argument that is not key=value) and the overrides, in order."""
    paths = [arg for arg in args if "=" not in arg or arg.lower().endswith(CONFIG_SUFFIXES) and Path(arg).exists()]
    overrides = [arg for arg in args if arg not in paths]
    if len(paths) > 1:
        raise ConfigError(f"expected one config file, got {len(paths)}: {', '.join(paths)}; "
                          "other arguments must look like key=value.")
    return (paths[0] if paths else None), overrides


def _load(args: argparse.Namespace):
    from .config import load_config

    path, overrides = _split_config_args(args.args)
    if path is None and not overrides:
        raise ConfigError("no configuration given; pass a YAML/JSON file and/or key=value pairs, "
                          "e.g. `tuneforge train examples/sft_lora.yaml`.")
    return load_config(path, overrides)


def _require(cfg, command: str, *keys: str) -> None:
    missing = [key for key in keys if getattr(cfg, key) is None]
    if missing:
        raise ConfigError([f"{key} is not set; `tuneforge {command}` needs it." for key in missing], cfg.source)


def _preflight(cfg, *, training: bool) -> None:
    """Every remaining configuration problem at once, before any data or weights load."""
    from .config import check_implemented
    from .data.preflight import preflight_problems

    problems = preflight_problems(cfg)
    if training:
        try:
            check_implemented(cfg)
        except ConfigError as err:
            problems = err.problems + problems
    if problems:
        raise ConfigError(problems, cfg.source)


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.launch import is_our_worker, relaunch_under_torchrun

    cfg = _load(args)
    if not is_our_worker(os.environ):  # a worker we launched: the parent checked already
        _preflight(cfg, training=True)
    if not _only_preprocesses(cfg):
        # Several devices/nodes (or FORCE_TORCHRUN=1): the same command again, under torchrun.
        exit_code = relaunch_under_torchrun(args.args, deepspeed=bool(getattr(cfg, "deepspeed", None)))
        if exit_code is not None:
            return exit_code
    return run_training(cfg)


def _only_preprocesses(cfg) -> bool:
    return cfg.tokenized_path is not None and not os.path.exists(cfg.tokenized_path)


def run_training(cfg) -> int:
    """What `tuneforge train` does with a valid config.

    As in LLaMA-Factory, a `tokenized_path` that does not exist yet means "preprocess, save there and stop";
    one that exists is loaded by the data pipeline and training goes on from it.
    """
    _require(cfg, "train", "model_name_or_path")
    if _only_preprocesses(cfg):
        from .data.pipeline import preprocess_only

        return preprocess_only(cfg)
    from .train import run_train

    run_train(cfg)
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    cfg = _load(args)
    _require(cfg, "data check", "model_name_or_path", "dataset")
    _preflight(cfg, training=False)
    from .data.pipeline import run_data_check

    return run_data_check(cfg)


def _cmd_chat(args: argparse.Namespace) -> int:
    from .config import check_implemented

    cfg = _load(args)
    check_implemented(cfg)
    _require(cfg, "chat", "model_name_or_path")
    from .chat import run_chat

    return run_chat(cfg, message=args.message)


def _cmd_version(_args: argparse.Namespace) -> int:
    from importlib import metadata

    from . import __version__

    print(f"tuneforge {__version__}")
    for package in ("torch", "transformers", "datasets", "tokenizers", "accelerate", "peft", "trl"):
        try:
            print(f"  {package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            print(f"  {package} (not installed)")
    return 0


def _cmd_planned(args: argparse.Namespace) -> int:
    print(f"not implemented yet: {args.command}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
