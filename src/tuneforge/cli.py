"""The `tuneforge` command: one subcommand per job.

    tuneforge train CFG [key=value ...]        validate, then train (or preprocess to a new tokenized_path)
    tuneforge train --dry-run CFG [...]        validate, print the plan and the memory estimate; load nothing
    tuneforge data check CFG [key=value ...]   validate the datasets and print their report
    tuneforge chat CFG [key=value ...] [--message TEXT]   chat with the model (interactive, or one answer)
    tuneforge export CFG [key=value ...]       merge adapters; write shards, tokenizer, Modelfile (+ GGUF / GPTQ)
    tuneforge eval CFG [key=value ...]         multiple-choice benchmark (MMLU / CMMLU / C-Eval layout)
    tuneforge expand --model_name_or_path M --output_dir D --num_expand N   LLaMA Pro block expansion
    tuneforge api CFG [key=value ...]          serve the model over an OpenAI-compatible HTTP API
    tuneforge version
    tuneforge webui [--host H] [--port P] [--share] [--output-root DIR] [--auth-file F]   the web UI (127.0.0.1:7860)

Heavy libraries are imported inside the commands, so `tuneforge --help` and `version` answer at once.
A mistake in the user's input (UserError) prints `error: <message>` and exits with 2, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from typing import TYPE_CHECKING

from .errors import ConfigError, UserError

if TYPE_CHECKING:
    from .config import Config

EXIT_USAGE = 2
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
    train.add_argument("--dry-run", action="store_true", help="validate, then print the plan and the memory "
                       "estimate without loading weights or data")
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
    for flag, what in (("--image", "an image"), ("--video", "a video (file or folder of frames)"),
                       ("--audio", "an audio file")):
        chat.add_argument(flag, action="append", default=[], metavar="PATH",
                          help=f"{what} for the first message of a vision/audio-language model (repeatable)")
    chat.set_defaults(handler=_cmd_chat)

    export = commands.add_parser("export", help="merge the adapters of a config into the base model and write "
                                 "it to export_dir (safetensors shards, tokenizer, Ollama Modelfile, GGUF)")
    _add_config_arguments(export)
    export.set_defaults(handler=_cmd_export)

    evaluate = commands.add_parser("eval", help="score a model on a multiple-choice benchmark (task, task_dir)")
    _add_config_arguments(evaluate)
    evaluate.set_defaults(handler=_cmd_eval)
    from .model import llama_pro  # light: heavy imports happen inside expand_model

    expand = commands.add_parser("expand", help="LLaMA Pro: insert identity blocks into a model "
                                 "(then train them with use_llama_pro)")
    llama_pro.build_parser(expand).set_defaults(handler=llama_pro.run)

    api = commands.add_parser("api", help="serve the model of a config over an OpenAI-compatible HTTP API "
                              "(env: API_HOST, API_PORT, API_KEY, API_MODEL_NAME, MAX_CONCURRENT)")
    _add_config_arguments(api)
    api.set_defaults(handler=_cmd_api)

    webui = commands.add_parser("webui", help="serve the web UI (default 127.0.0.1:7860; GRADIO_SERVER_NAME / "
                                "GRADIO_SERVER_PORT also set them)")
    webui.add_argument("--host", help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1)")
    webui.add_argument("--port", type=int, help="port (default $GRADIO_SERVER_PORT or 7860)")
    webui.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    webui.add_argument("--output-root", default="saves", help="where runs are written and looked for (default saves)")
    webui.add_argument("--auth-file", help="require a login: a file of user:password lines (also "
                       "$TUNEFORGE_WEBUI_AUTH=user:password)")
    webui.add_argument("--auth", help="require a login as user:password (visible in the process list; "
                       "prefer --auth-file)")
    webui.add_argument("--insecure-no-auth", action="store_true",
                       help="serve --share or a non-loopback --host without a login anyway")
    webui.add_argument("--allowed-root", action="append", default=[], metavar="DIR",
                       help="a folder the page may read and write besides the working directory, the output "
                            "root and the caches (repeatable)")
    webui.add_argument("--allow-key", action="append", default=[], metavar="KEY",
                       help="let the page set a key it refuses by default (trust_remote_code)")
    webui.set_defaults(handler=_cmd_webui)

    version = commands.add_parser("version", help="print the versions of tuneforge and its library stack")
    version.set_defaults(handler=_cmd_version)

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


def _load(args: argparse.Namespace, defer_training_args: bool = False) -> Config:
    """The command's Config. The entry points it is handed to (run_chat, run_api, run_export, run_eval) validate
    it on the one shared path (tuneforge.validate); train and data check validate here, before they branch."""
    from .config import load_config

    path, overrides = _split_config_args(args.args)
    if path is None and not overrides:
        raise ConfigError("no configuration given; pass a YAML/JSON file and/or key=value pairs, "
                          "e.g. `tuneforge train examples/sft_lora.yaml`.")
    return load_config(path, overrides, defer_training_args=defer_training_args)


def _require(cfg: Config, command: str, *keys: str) -> None:
    missing = [key for key in keys if cfg.value(key) is None]
    if missing:
        raise ConfigError([f"{key} is not set; `tuneforge {command}` needs it." for key in missing], cfg.source)


def _cmd_train(args: argparse.Namespace) -> int:
    from .train.launch.torchrun import relaunch_under_torchrun
    from .validate import validate_config

    dry_run = getattr(args, "dry_run", False)
    cfg = _load(args, defer_training_args=dry_run)  # a dry run never builds the training arguments (torch)
    validate_config(cfg)  # before preprocessing or a torchrun relaunch, so the user sees the problems once
    if dry_run:
        from .train.dry_run import dry_run_report

        print(dry_run_report(cfg))
        return 0
    if not _only_preprocesses(cfg):
        from .train.launch.ray import run_under_ray

        if run_under_ray(cfg) is not None:  # USE_RAY=1 or ray_num_workers > 1: Ray Train runs the ranks
            return 0
        # Several devices/nodes (or FORCE_TORCHRUN=1): the same command again, under torchrun.
        exit_code = relaunch_under_torchrun(args.args, deepspeed=bool(cfg.train.deepspeed))
        if exit_code is not None:
            return exit_code
    return run_training(cfg)


def _only_preprocesses(cfg: Config) -> bool:
    path = cfg.data.tokenized_path
    return path is not None and not os.path.exists(path)


def run_training(cfg: Config) -> int:
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
    from .validate import validate_config

    cfg = _load(args)
    validate_config(cfg, data_only=True)
    _require(cfg, "data check", "model_name_or_path", "dataset")
    from .data.pipeline import run_data_check

    return run_data_check(cfg)


def _cmd_chat(args: argparse.Namespace) -> int:
    cfg = _load(args)
    _require(cfg, "chat", "model_name_or_path")
    from .chat import run_chat
    from .data.media.base import RowMedia

    return run_chat(cfg, message=args.message, media=RowMedia.of(args.image, args.video, args.audio))


def _cmd_export(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from .export import run_export

    run_export(cfg)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    cfg = _load(args)
    from .evaluate import run_eval

    run_eval(cfg)
    return 0


def _cmd_api(args: argparse.Namespace) -> int:
    cfg = _load(args)
    _require(cfg, "api", "model_name_or_path")
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn", "sse_starlette") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"api: needs {', '.join(missing)}; install them with `pip install 'tuneforge[api]'`")
    from .serve.server import run_api

    return run_api(cfg)


def _cmd_webui(args: argparse.Namespace) -> int:
    from .webui import launch

    launch(args.host, args.port, args.share, args.output_root, auth=args.auth, auth_file=args.auth_file,
           insecure_no_auth=args.insecure_no_auth, allowed_roots=tuple(args.allowed_root),
           allowed_keys=tuple(args.allow_key))
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
