"""Where a training job will run and why one waits, as data and in one line of words.

``capacity(queue)`` looks without starting anything: before this process has joined Ray it
describes this machine (its CPUs, GPUs none, memory free now) or the cluster it will join
(``TL_RAY_ADDRESS``); once joined, the cluster's live nodes as Ray sees them. A job waits
for a free worker (the queue's ``max_running`` jobs train, or no node has a free CPU or the
resources jobs ask for) or for memory (a job may use ``TL_JOB_MEMORY_GB``; less is free).
"""

from __future__ import annotations

import dataclasses
import os

from tlcore.core.settings import load_settings
from tlcore.core.storage import GB
from tlcore.training.worker import cluster_resources


@dataclasses.dataclass(frozen=True)
class Machine:
    """One machine jobs can train on.

    Attributes:
        address: its network address ("" for this machine before Ray is joined).
        cpus, gpus: how many it has.
        memory: bytes free now (this machine), or the memory Ray may schedule there (a cluster node).
        resources: its custom Ray resources (what ``JobQueue(resources=...)`` can ask for).
    """

    address: str
    cpus: float
    gpus: float
    memory: int
    resources: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Capacity:
    """Where jobs run and what holds them back.

    Attributes:
        cluster: the address of the cluster jobs train on; "" for this machine's own Ray.
        joined: whether ``machines`` are the cluster's as Ray sees them (else this machine's, read here).
        machines: where jobs can train (the nodes that have what jobs ask for).
        running, waiting: jobs of the queue training now, and in line.
        max_running: jobs the queue trains at once (``TL_MAX_TRAINING_JOBS``).
        free_cpus: CPUs free on the cluster now (None: not joined).
        job_memory: bytes one job may use (``TL_JOB_MEMORY_GB``).
    """

    cluster: str
    joined: bool
    machines: tuple[Machine, ...]
    running: int = 0
    waiting: int = 0
    max_running: int = 1
    free_cpus: float | None = None
    job_memory: int = 0

    @property
    def cpus(self) -> float | None:
        """CPUs of the machines jobs can train on; None when not known yet (a cluster not joined)."""
        return sum(m.cpus for m in self.machines) if self.machines or self.joined else None

    @property
    def where(self) -> str:
        """Where the next job will train, in words."""
        if not self.machines:
            return (f"on the Ray cluster at {self.cluster} (its machines are listed once this server has joined it)"
                    if self.cluster and not self.joined else "nowhere: no machine has what jobs ask for")
        cpus, gpus = sum(m.cpus for m in self.machines), sum(m.gpus for m in self.machines)
        hardware = f"{cpus:g} CPUs" + (f", {gpus:g} GPUs" if gpus else ", no GPU")
        if not self.cluster and len(self.machines) == 1:
            return f"on this machine ({hardware}, {_gb(self.machines[0].memory)} memory free)"
        where = f"the cluster at {self.cluster}" if self.cluster else "this machine's Ray"
        return f"on {where}: {len(self.machines)} machine(s), {hardware}, {_gb(sum(m.memory for m in self.machines))} memory"

    @property
    def waits_because(self) -> str | None:
        """Why a new job would wait, in words; None when it would start at once."""
        if self.running >= self.max_running:
            return (f"no free worker: {self.running} job(s) train now, the most this server trains at once "
                    f"(TL_MAX_TRAINING_JOBS={self.max_running})" + (f", and {self.waiting} wait in line"
                                                                      if self.waiting else ""))
        if self.free_cpus is not None and self.free_cpus < 1:
            return "no free worker: every CPU of the cluster is busy"
        if self.machines and max(m.memory for m in self.machines) < self.job_memory:
            return (f"memory: a job may use up to {_gb(self.job_memory)} (TL_JOB_MEMORY_GB) and the most any "
                    f"machine has free is {_gb(max(m.memory for m in self.machines))}")
        return None

    def __str__(self) -> str:
        reason = self.waits_because
        return f"Jobs train {self.where}. " + (f"A new job waits: {reason}." if reason else "A new job starts at once.")


def _gb(n_bytes: int) -> str:
    return f"{n_bytes / GB:.1f} GB"


def free_memory() -> int:
    """Bytes of memory this machine has available now (``MemAvailable``)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def capacity(queue=None) -> Capacity:
    """Where jobs of ``queue`` (a ``JobQueue``; None: an empty one) will train, and why one would wait.

    Only nodes with every custom resource the queue's jobs ask for are listed.
    """
    settings = load_settings()
    running, waiting = queue.load() if queue is not None else (0, 0)
    asked = getattr(queue, "resources", {}) or {}
    common = dict(running=running, waiting=waiting, max_running=getattr(queue, "max_running", 1),
                  job_memory=int(settings.job_memory_gb * GB))
    seen = cluster_resources()
    if seen is None:
        if settings.ray_address:
            return Capacity(settings.ray_address, False, (), **common)
        return Capacity("", False, (Machine("", float(os.cpu_count() or 1), 0.0, free_memory()),), **common)
    nodes, free = seen
    machines = tuple(Machine(n["address"], n["cpus"], n["gpus"], n["memory"], n["custom"]) for n in nodes
                     if all(n["custom"].get(key, 0) >= amount for key, amount in asked.items()))
    if not settings.ray_address and len(machines) == 1:  # this machine's own Ray: what is free here now
        machines = (dataclasses.replace(machines[0], memory=free_memory()),)
    return Capacity(settings.ray_address, True, machines, free_cpus=free.get("CPU", 0.0), **common)
