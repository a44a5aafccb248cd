"""Ray as the cluster engine: `USE_RAY=1` or `ray_num_workers > 1` runs the training through Ray Train.

Ray Train's TorchTrainer starts `ray_num_workers` workers (each reserving `resources_per_worker`, placed by
`placement_strategy`), opens the torch process group between them (gloo on CPU, NCCL on GPUs) and sets
RANK / LOCAL_RANK / WORLD_SIZE, so inside a worker the run is exactly a torchrun rank: the same
`run_train(cfg)`, the same data split and losses. `ray_init_kwargs` go to `ray.init` (e.g. `address: auto`
to join a running cluster); Ray Train keeps its run state under `<ray_storage_path>/<ray_run_name>`.
LLaMA-Factory's keys and defaults, except `resources_per_worker`: LLaMA-Factory asks every worker for a GPU,
which on a cluster without GPUs waits forever; unset, we ask for a GPU only where the cluster has one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from .torchrun import LAUNCHED_ENV, TRUE_VALUES, is_launched_worker

if TYPE_CHECKING:
    from ...config import Config
    from ...config.groups import TrainArgs

logger = logging.getLogger(__name__)

RAY_EXTRA = "pip install 'tuneforge[ray]' (ray[train]==2.60.0)"


def wants_ray(train: TrainArgs, env: Mapping[str, str]) -> bool:
    """LLaMA-Factory's switch (USE_RAY=1), or asking for more than one Ray worker."""
    return env.get("USE_RAY", "").lower() in TRUE_VALUES or train.ray_num_workers > 1


def check_ray_installed(train: TrainArgs) -> None:
    try:
        import ray  # noqa: F401
        import ray.train.torch  # noqa: F401
    except ImportError:
        asked = f"ray_num_workers: {train.ray_num_workers}" if train.ray_num_workers > 1 else "USE_RAY=1"
        raise ConfigError(f"{asked} trains through Ray Train, but Ray is not installed: {RAY_EXTRA}; or unset "
                          "USE_RAY and ray_num_workers to train with torchrun.") from None


def worker_resources(train: TrainArgs, cluster: Mapping[str, float]) -> dict[str, float]:
    """`resources_per_worker`, checked against what the cluster has (a worker asking for more waits forever)."""
    resources = dict(train.resources_per_worker or {})
    if not resources:  # the default still has to fit ray_num_workers times, or the workers wait forever
        resources = {"GPU": 1.0} if cluster.get("GPU", 0) >= 1 else {"CPU": 1.0}
    missing = [f"{name}: {amount}" for name, amount in resources.items() if cluster.get(name, 0) < amount]
    if missing:
        have = ", ".join(f"{name}: {amount:g}" for name, amount in sorted(cluster.items())
                         if name in ("CPU", "GPU", "memory") or name in resources)
        raise ConfigError(f"resources_per_worker: a worker asks for {{{', '.join(missing)}}} but the Ray cluster "
                          f"has {{{have}}}; its workers would wait forever. Ask for what the cluster has, e.g. "
                          "resources_per_worker: {CPU: 1} on CPU machines.")
    total = {name: amount * train.ray_num_workers for name, amount in resources.items()}
    short = [name for name, amount in total.items() if cluster.get(name, 0) < amount]
    if short:
        raise ConfigError(f"ray_num_workers: {train.ray_num_workers} workers x resources_per_worker {resources} "
                          f"need {total}, more {', '.join(short)} than the Ray cluster has ({dict(cluster)}): "
                          f"this cluster lacks the hardware for {train.ray_num_workers} workers (LLaMA-Factory's "
                          "examples give each worker a GPU). Lower ray_num_workers or the resources per worker.")
    return resources


def run_under_ray(cfg: Config, env: Mapping[str, str] | None = None) -> int | None:
    """Train cfg through Ray Train and return 0 (a failed worker raises); None: not a Ray run."""
    env = os.environ if env is None else env
    train = cfg.train
    if not wants_ray(train, env) or env.get(LAUNCHED_ENV) or is_launched_worker(env):
        return None  # already one rank of a launched run (ours, torchrun's or Ray's): train here
    check_ray_installed(train)
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init(**(train.ray_init_kwargs or {}))
    resources = worker_resources(train, ray.cluster_resources())
    use_gpu = resources.get("GPU", 0) > 0
    logger.info("Ray Train: %d worker(s), %s each, placement %s, run state in %s", train.ray_num_workers,
                resources, train.placement_strategy, os.path.join(train.ray_storage_path, train.ray_run_name or "*"))
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"cfg": cfg},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo", timeout_s=train.ddp_timeout),
        scaling_config=ScalingConfig(num_workers=train.ray_num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources, placement_strategy=train.placement_strategy),
        run_config=RunConfig(name=train.ray_run_name, storage_path=_storage_path(train.ray_storage_path),
                             storage_filesystem=_filesystem(train.ray_storage_filesystem)),
    )
    trainer.fit()  # raises when a worker fails, with the worker's traceback
    return 0


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray worker: the process group and RANK / WORLD_SIZE are set up by Ray Train; train as one rank."""
    from ...runtime import runtime
    from .. import run_train

    os.environ[LAUNCHED_ENV] = "1"  # a rank of a launched run: never relaunch (torchrun or Ray) from here
    runtime.cache_clear()
    run_train(config["cfg"])


def _storage_path(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)  # Ray wants an absolute local path


def _filesystem(name: str | None) -> Any:
    if name is None:
        return None
    import pyarrow.fs as fs

    return fs.S3FileSystem() if name == "s3" else fs.GcsFileSystem()

