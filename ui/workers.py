"""The Train page's Workers control: one run across several Ray Train workers, and its progress in words.

The control is drawn only where jobs can train on more than one CPU; it is disabled, with the reason,
for settings a run across workers cannot honour (``tlcore.unsupported_across_workers``), and says
what such a run does differently and, on one machine, that it is slower there.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

import tlcore
from ui import control_help, training


def choose(config: tlcore.TrainConfig) -> tlcore.TrainConfig:
    """The Workers control under Settings; ``config`` with the workers chosen (1 when not drawn or disabled)."""
    where = tlcore.capacity(training.job_queue())
    most = tlcore.most_workers(where.cpus)
    if most < 2:  # one CPU: nothing to choose
        return config
    unsupported = tlcore.unsupported_across_workers(config)
    count = int(st.number_input("Workers for this run", 1, most, 1, key="workers", disabled=bool(unsupported),
                                help=control_help.WORKERS))
    if unsupported:
        st.caption(f"One run across several workers trains the first phase only: it cannot add "
                   f"{' or '.join(unsupported)}, so this run trains in 1 worker. Turn "
                   f"{'it' if len(unsupported) == 1 else 'them'} off to use more.")
        return config
    if count > 1:
        slower = (f" On one machine ({where.cpus:g} CPUs) the workers share its cores, each with a copy of the "
                  f"model, so this is slower than 1 worker; it pays on several machines."
                  if len(where.machines) == 1 else "")
        st.caption(tlcore.ACROSS_WORKERS + slower)
    return dataclasses.replace(config, workers=count)


def progress_words(config: tlcore.TrainConfig, progress: tlcore.BatchProgress | None, *, placed: bool = True) -> str:
    """Where a running job is, in words: its batch, and on how many workers.

    ``placed`` is False while Ray has not started the job's worker yet: it waits for a free CPU,
    and the words say how many are free now.
    """
    if config.workers == 1:
        if progress:
            return progress.describe()
        if not placed:
            where = tlcore.capacity(training.job_queue())
            if where.free_cpus is not None and where.cpus is not None:
                return (f"starting a worker, which needs a free CPU ({where.free_cpus:g} of {where.cpus:g} "
                        "free on the cluster now)")
        return "starting a worker, preparing the images and the model"
    if progress is None:
        return (f"starting {config.workers} workers (each waits for a free CPU), preparing the images and "
                "the model")
    return f"training on {config.workers} workers, {progress.describe()}"
