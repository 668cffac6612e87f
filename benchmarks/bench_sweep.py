"""Wall time of the sweep serially vs as Ray tasks, and the cost of one task beyond its own work.

Runs the same grid twice from an empty folder: serially in this process and with
``executor="ray", num_workers=N`` on a local Ray cluster (started and stopped inside the timing),
and prints the ratio; then measures the overhead per task of each executor with tasks that do
nothing (Ray: scheduling, argument transfer, result return; serial: the loop and progress bar)
and the cost of a rerun that finds every result file on disk. Peak resident memory of this
process is printed too (Ray workers are separate processes).

    python benchmarks/bench_sweep.py [--quick] [--workers 2] [--seeds 0,1,2] [--overhead-tasks 40]

The default grid is what ``make demo`` runs. On a shared machine wall times move with the load:
run it when the machine is quiet, or read the ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

from captum_pags.analysis import SweepConfig, run_sweep, run_tasks
from captum_pags.analysis.grid import SweepTask


def _noop(task: SweepTask, config: object, threads: object) -> dict:
    return {"task": task.seed}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the --quick grid instead of the default one")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (default: 2)")
    parser.add_argument("--seeds", default=None, help="training seeds (default: the config's)")
    parser.add_argument("--overhead-tasks", type=int, default=40, help="no-op tasks for the overhead (default: 40)")
    parser.add_argument("--skip-ray", action="store_true", help="serial timing only")
    args = parser.parse_args()

    extra = {"quiet": True}
    if args.seeds:
        extra["seeds"] = tuple(int(s) for s in args.seeds.split(","))
    make = SweepConfig.quick if args.quick else SweepConfig
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, grid: {'quick' if args.quick else 'default'}")

    with tempfile.TemporaryDirectory() as serial_dir, tempfile.TemporaryDirectory() as ray_dir:
        config = make(out=serial_dir, **extra)
        start = time.perf_counter()
        serial = run_sweep(config)
        t_serial = time.perf_counter() - start
        n_models = len({r.model for r in serial.results})
        print(f"serial: {t_serial:8.1f} s for {n_models} models ({t_serial / n_models:.2f} s per model)")
        start = time.perf_counter()
        run_sweep(config)
        t_rerun = time.perf_counter() - start
        print(f"rerun with every result on disk: {t_rerun:.1f} s ({t_rerun / n_models * 1e3:.0f} ms per model)")
        if not args.skip_ray:
            start = time.perf_counter()
            run_sweep(make(out=ray_dir, **extra), executor="ray", num_workers=args.workers)
            t_ray = time.perf_counter() - start
            print(
                f"ray, {args.workers} workers: {t_ray:8.1f} s  ->  speed-up serial / ray = {t_serial / t_ray:.2f}x "
                f"(ideal {min(args.workers, os.cpu_count() or 1)}x)"
            )

    n = args.overhead_tasks
    tasks = [SweepTask("noise", 1.0, i) for i in range(n)]
    quiet = SweepConfig.quick(quiet=True)
    start = time.perf_counter()
    run_tasks(tasks, quiet, task_fn=_noop)
    t_loop = time.perf_counter() - start
    print(f"serial overhead per task: {t_loop / n * 1e3:.3f} ms")
    if not args.skip_ray:
        import ray

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        t_init = time.perf_counter() - start
        try:
            run_tasks(tasks[:2], quiet, executor="ray", task_fn=_noop)  # workers started
            start = time.perf_counter()
            run_tasks(tasks, quiet, executor="ray", task_fn=_noop)
            t_tasks = time.perf_counter() - start
        finally:
            ray.shutdown()
        print(f"ray: cluster start {t_init:.1f} s, overhead per task {t_tasks / n * 1e3:.1f} ms (warm workers)")
    print(f"peak memory of this process: {_peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
