"""Independent calls of one function, as parallel Ray tasks or one after another in this process.

The transfer curve's probes are such calls: each reads its own memory-mapped feature file
and hands back a small result. From the app they run as Ray tasks (one core each, on the
local instance or the cluster at ``TL_RAY_ADDRESS``); a notebook runs them here, in order,
without Ray. Ray is reached through ``tlcore.training.worker.ray_module``, never imported
at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tlcore.core.errors import TLError
from tlcore.training.worker import connect, ray_module, worker_environment

POLL_SECONDS = 0.25


def run_calls(function: Callable[..., Any], calls: Sequence[dict[str, Any]], *, use_ray: bool = False,
              on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """``[function(**call) for call in calls]``, in that order, in parallel Ray tasks when ``use_ray``.

    Args:
        function: a module-level function (Ray pickles it by reference).
        calls: the keyword arguments of each call.
        use_ray: run each call as a Ray task (one CPU each); False runs them here, one after another.
        on_done: called with (index of the call, its result) as each finishes.

    Raises:
        TLError: what a call raised (a Ray task's TLError is handed back as itself).
    """
    if not use_ray:
        results = []
        for index, call in enumerate(calls):
            results.append(function(**call))
            if on_done:
                on_done(index, results[-1])
        return results
    connect()
    ray = ray_module()
    task = ray.remote(num_cpus=1, max_retries=0)(function).options(
        runtime_env={"env_vars": worker_environment()})
    pending = {task.remote(**call): index for index, call in enumerate(calls)}
    results: list[Any] = [None] * len(calls)
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in done:
                index = pending.pop(ref)
                try:
                    results[index] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, TLError):
                        raise exc.cause from None
                    raise
                if on_done:
                    on_done(index, results[index])
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return results
