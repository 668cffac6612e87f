"""A sweep task that kills its own worker process once, after its first training epoch (for the Ray test)."""

import os
from pathlib import Path

from captum_pags.analysis import tasks

TARGET = ("noise", 1.0)


def dying_run_task(task, config, threads):
    marker = Path(config["out"]) / "killed_once"
    if (task.method, task.strength) == TARGET and not marker.exists():
        marker.write_text(str(os.getpid()))
        real_fit = tasks.fit

        def fit_then_die(*args, **kwargs):
            real_fit(*args, **{**kwargs, "epochs": 1})  # the first epoch ends with a checkpoint...
            os._exit(1)  # ...then the worker process dies without a word

        tasks.fit = fit_then_die
    return tasks.run_task(task, config, threads)
