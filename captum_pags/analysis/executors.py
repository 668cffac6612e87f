"""Where a sweep's tasks run: in this process, one after another, or as Ray tasks on a cluster."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

from tqdm.auto import tqdm

from .config import SweepConfig
from .errors import AnalysisInputError
from .grid import SweepTask
from .tasks import run_task

__all__ = ["EXECUTORS", "run_tasks"]

Executor = Literal["serial", "ray"]
#: The executors :func:`run_tasks` knows.
EXECUTORS: tuple[str, ...] = ("serial", "ray")
TaskFn = Callable[[SweepTask, Any, Any], dict[str, Any]]


def _label(task: SweepTask) -> str:
    return "plain" if task.method == "plain" else f"{task.method} {task.strength:g} seed {task.seed}"


def _serial(tasks: Sequence[SweepTask], config: SweepConfig, task_fn: TaskFn) -> list[dict[str, Any]]:
    out = []
    bar = tqdm(tasks, desc="train + measure", unit="model", disable=config.quiet)
    for task in bar:
        bar.set_postfix_str(_label(task))
        out.append(task_fn(task, config, None))
    return out


def _ray_task(task_fn: TaskFn, task: SweepTask, config: dict[str, Any], threads: int) -> dict[str, Any]:
    return task_fn(task, config, threads)


def _ray(
    tasks: Sequence[SweepTask],
    config: SweepConfig,
    task_fn: TaskFn,
    address: str | None,
    num_workers: int | None,
    max_retries: int,
) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise AnalysisInputError(
            "the ray executor needs Ray: pip install 'captum-pags[ray]' (or pip install ray)"
        ) from None
    started = not ray.is_initialized()
    if started:
        cores = os.cpu_count() or 1
        workers = num_workers or (None if address else cores)
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **kwargs)
        else:  # a local cluster with exactly the workers asked for
            ray.init(num_cpus=workers, **kwargs)
    try:
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(num_workers or cluster_cpus, cluster_cpus))
        # each task reserves its share of the cores and uses that many threads: no oversubscription
        threads = max(1, cluster_cpus // workers) if address else max(1, (os.cpu_count() or 1) // workers)
        remote = ray.remote(num_cpus=max(1, cluster_cpus // workers), max_retries=max_retries)(_ray_task)
        payload = config.to_dict()
        pending = {remote.remote(task_fn, task, payload, threads): i for i, task in enumerate(tasks)}
        results: list[dict[str, Any] | None] = [None] * len(tasks)
        with tqdm(
            total=len(tasks), desc=f"train + measure ({workers} Ray workers)", unit="model", disable=config.quiet
        ) as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    results[pending.pop(ref)] = ray.get(ref)
                    bar.update(1)
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()


def run_tasks(
    tasks: Sequence[SweepTask],
    config: SweepConfig,
    *,
    executor: Executor = "serial",
    address: str | None = None,
    num_workers: int | None = None,
    max_retries: int = 3,
    task_fn: TaskFn = run_task,
) -> list[dict[str, Any]]:
    """Run sweep tasks and return their result payloads (in the order of ``tasks``).

    Every task writes its model and its result file into ``config.out`` itself, so the results
    do not depend on how the tasks ran, and a partly finished sweep resumes from the files.

    Parameters
    ----------
    tasks : sequence of SweepTask
        What to run (:func:`~captum_pags.analysis.grid.sweep_tasks`, or a shard of it).
    config : SweepConfig
        The sweep's settings.
    executor : {"serial", "ray"}
        ``"serial"``: one after another in this process. ``"ray"``: one Ray task per model
        (``pip install 'captum-pags[ray]'``); without ``address`` :func:`ray.init` starts a local
        cluster of ``num_workers`` CPUs, with one it joins that cluster. A task whose worker dies
        is retried up to ``max_retries`` times and resumes from its training checkpoint.
    address : str, optional
        Address of a running Ray cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``).
    num_workers : int, optional
        Tasks that run at once (default: the local cores, or every CPU of the cluster). Each uses
        ``cores // num_workers`` torch threads, so the workers together do not oversubscribe.
    max_retries : int
        Retries of a Ray task whose worker died.
    task_fn : callable
        ``task_fn(task, config, threads) -> payload``, by default
        :func:`~captum_pags.analysis.tasks.run_task` (wrap it to add logging; it must be importable
        by the workers).

    Returns
    -------
    list of dict

    Examples
    --------
    >>> run_tasks([], SweepConfig.quick(quiet=True))
    []
    """
    if executor not in EXECUTORS:
        raise ValueError(f"Expected `executor` to be one of {list(EXECUTORS)} but got {executor!r}")
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1
    ):
        raise ValueError(f"Expected `num_workers` to be an int >= 1 but got {num_workers!r}")
    if address is not None and executor != "ray":
        raise ValueError(f"Expected `address` only with executor='ray' but got executor={executor!r}")
    if not tasks:
        return []
    if executor == "serial":
        return _serial(tasks, config, task_fn)
    return _ray(tasks, config, task_fn, address, num_workers, max_retries)
