"""External loggers beyond transformers' own callbacks: SwanLab as LLaMA-Factory configures it, and the run's
tuneforge configuration sent to every logger the run reports to.

transformers' integration callbacks log the loss curve and the training arguments, but not our configuration
(model, data, method, LoRA... groups), which is what tells two runs apart; `RunConfigCallback` adds it, by
group, the way LLaMA-Factory's reporter adds its argument groups: to the W&B and SwanLab run configs, as the
artifact `tuneforge_config.json` of the MLflow run, and as the text `tuneforge_config` in TensorBoard.
Secrets (API keys, tokens, webhook secrets) are masked before anything leaves the process.

SwanLab: `report_to: swanlab` or LLaMA-Factory's `use_swanlab: true` attach one callback, swanlab's own (the
copy in transformers 5.24 fails with swanlab 0.10), configured from the swanlab_* keys. `swanlab_mode`
keeps its declared default "cloud" unless SWANLAB_MODE (swanlab's own switch) says otherwise.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

if TYPE_CHECKING:
    from ...config import Config
    from ...config.groups import TrainArgs

logger = logging.getLogger("tuneforge.train")

CONFIG_NAME = "tuneforge_config"
SWANLAB_CONFIG = "swanlab_public_config.json"  # LLaMA-Factory's file: the SwanLab run's public settings
# hub_token, hf_hub_token, swanlab_api_key, swanlab_lark_secret, swanlab_lark_webhook_url (its URL is the secret)
SECRET_ENDINGS = ("_token", "api_key", "_secret", "webhook_url", "password")
SWANLAB_MODE_ENV = "SWANLAB_MODE"


def attach_loggers(trainer: Any, cfg: Config) -> None:
    """SwanLab's callback where asked (report_to or use_swanlab), then the run-config reporter after every
    logger callback, so their runs exist when it writes."""
    report_to = list(trainer.args.report_to or [])
    if "swanlab" in report_to or cfg.train.use_swanlab:
        _use_swanlab_callback(trainer, cfg.train)
        if "swanlab" not in report_to:
            report_to.append("swanlab")
    if report_to:
        trainer.add_callback(RunConfigCallback(run_config_by_group(cfg), report_to, trainer.callback_handler))


def run_config_by_group(cfg: Config) -> dict[str, dict[str, Any]]:
    """The run's configuration as {group: {key: value}}, secrets masked, values JSON-safe."""
    from ...config import all_params

    params = all_params()
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in cfg.to_dict().items():
        group = params[key].group if key in params else "train"
        grouped.setdefault(group, {})[key] = _safe(key, value)
    return grouped


def _safe(key: str, value: Any) -> Any:
    if value is not None and key.endswith(SECRET_ENDINGS):
        return "***"
    return json.loads(json.dumps(value, default=str))


class RunConfigCallback(TrainerCallback):
    """Sends the run's configuration to each logger when training begins (after their own setup)."""

    def __init__(self, config: dict[str, dict[str, Any]], loggers: list[str], handler: Any) -> None:
        self.config = config
        self.loggers = loggers
        self.handler = handler  # the trainer's callbacks: TensorBoard's writer and SwanLab's run live there

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        callbacks = self.handler.callbacks
        for name in self.loggers:
            send = SENDERS.get(name)
            if send is not None:
                send(self.config, args, _callback_named(callbacks, name))


def _callback_named(callbacks: list[Any], logger_name: str) -> Any:
    wanted = {"tensorboard": "TensorBoardCallback", "swanlab": "SwanLabCallback"}.get(logger_name)
    return next((callback for callback in callbacks if type(callback).__name__ == wanted), None)


def _to_wandb(config: dict[str, dict[str, Any]], args: Any, callback: Any) -> None:
    import wandb

    if wandb.run is not None:
        wandb.config.update({CONFIG_NAME: config}, allow_val_change=True)


def _to_mlflow(config: dict[str, dict[str, Any]], args: Any, callback: Any) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_dict(config, f"{CONFIG_NAME}.json")


def _to_tensorboard(config: dict[str, dict[str, Any]], args: Any, callback: Any) -> None:
    writer = getattr(callback, "tb_writer", None)
    if writer is not None:
        writer.add_text(CONFIG_NAME, "```json\n" + json.dumps(config, indent=2, ensure_ascii=False) + "\n```")
        writer.flush()


def _to_swanlab(config: dict[str, dict[str, Any]], args: Any, callback: Any) -> None:
    if callback is not None:
        callback.update_config({CONFIG_NAME: config})
    import swanlab

    run = swanlab.get_run() if hasattr(swanlab, "get_run") else None
    public: Any = {}
    try:  # LLaMA-Factory writes the run's public settings (project, experiment, URL) next to the results
        public = run.public.json() if run is not None else {}
    except Exception:  # noqa: BLE001  (local and offline runs have no public record)
        public = {}
    with open(os.path.join(args.output_dir, SWANLAB_CONFIG), "w", encoding="utf-8") as handle:
        json.dump(public, handle, indent=2, default=str)


SENDERS = {"wandb": _to_wandb, "mlflow": _to_mlflow, "tensorboard": _to_tensorboard, "swanlab": _to_swanlab}


def _use_swanlab_callback(trainer: Any, train: TrainArgs) -> None:
    """Replace transformers' SwanLab callback by swanlab's own, configured from the swanlab_* keys."""
    import swanlab
    from swanlab.integration.transformers import SwanLabCallback as SwanLabOwnCallback
    from transformers.integrations.integration_utils import SwanLabCallback

    trainer.remove_callback(SwanLabCallback)
    if not trainer.is_world_process_zero():
        return
    if train.swanlab_api_key is not None:
        swanlab.login(api_key=train.swanlab_api_key)
    if train.swanlab_lark_webhook_url is not None:
        from swanlab.plugin.notification import LarkCallback

        swanlab.register_callbacks([LarkCallback(webhook_url=train.swanlab_lark_webhook_url,
                                                 secret=train.swanlab_lark_secret)])
    mode = train.swanlab_mode
    if mode == "cloud" and os.environ.get(SWANLAB_MODE_ENV):  # the declared default: swanlab's own switch wins
        mode = os.environ[SWANLAB_MODE_ENV]
    trainer.add_callback(SwanLabOwnCallback(
        project=train.swanlab_project, workspace=train.swanlab_workspace,
        experiment_name=train.swanlab_run_name or train.run_name, mode=mode, log_dir=train.swanlab_logdir,
        tags=["tuneforge"]))
