"""How many CPUs this process may use, and how its thread pools should wait, on a shared machine.

``os.cpu_count()`` counts the machine's CPUs, not this process's: a container's CPU quota (cgroup
``cpu.max``) or a CPU affinity mask (``taskset``, a batch scheduler) gives fewer. Thread pools sized
from it oversubscribe the CPUs, and threads that spin while they wait (OpenMP's and ONNX Runtime's
default) burn the cores the other threads need: on 2 cores shared with other jobs, the demo's tune
ran 13 times slower than alone. :func:`thread_settings` sizes the pools from :func:`usable_cpus` and
asks for a passive wait (``OMP_WAIT_POLICY=PASSIVE``, ONNX Runtime's ``allow_spinning`` off) when the
machine is already busy (load average plus our threads above the usable CPUs).

Environment: ``INSARCAST_THREADS`` forces the thread count, ``INSARCAST_WAIT`` (``active`` or
``passive``) the wait policy; an ``OMP_WAIT_POLICY`` set by the user is kept.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """CPUs the cgroup quota allows (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` of v1); None: no quota."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus(*, root: Path = CGROUP) -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (rounded up)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):                   # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


@dataclass(frozen=True)
class ThreadSettings:
    """What a run's thread pools use; recorded with its outputs (:meth:`to_dict`)."""

    usable_cpus: int
    threads: int
    load: float
    wait_policy: str                  # "passive" or "active"
    reason: str

    @property
    def passive(self) -> bool:
        return self.wait_policy == "passive"

    def to_dict(self) -> dict:
        return asdict(self)


def thread_settings(*, processes: int = 1) -> ThreadSettings:
    """Threads per process for ``processes`` processes of ours, and the wait policy (module doc)."""
    cpus = usable_cpus()
    forced = os.environ.get("INSARCAST_THREADS")
    threads = int(forced) if forced and forced.isdigit() and int(forced) > 0 else max(1, cpus // max(1, processes))
    try:
        load = float(os.getloadavg()[0])
    except (AttributeError, OSError):
        load = 0.0
    wait = os.environ.get("INSARCAST_WAIT", "").lower()
    if wait in ("active", "passive"):
        reason = "INSARCAST_WAIT"
    elif os.environ.get("OMP_WAIT_POLICY", "").lower() in ("active", "passive"):
        wait, reason = os.environ["OMP_WAIT_POLICY"].lower(), "OMP_WAIT_POLICY"
    elif load + threads * processes > cpus + 0.5:
        wait, reason = "passive", f"load {load:.2f} + {threads * processes} threads > {cpus} usable CPUs"
    else:
        wait, reason = "active", f"load {load:.2f} + {threads * processes} threads <= {cpus} usable CPUs"
    return ThreadSettings(usable_cpus=cpus, threads=threads, load=round(load, 2), wait_policy=wait, reason=reason)


def apply_openmp(settings: ThreadSettings) -> None:
    """Set ``OMP_WAIT_POLICY`` (unless the user did) and ``OMP_NUM_THREADS`` for libraries loaded from
    now on: OpenMP reads them when it starts, so call this before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", settings.wait_policy.upper())
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))


def allow_spinning() -> bool:
    """Whether ONNX Runtime's intra-op threads may spin while they wait (not when the machine is busy)."""
    return not thread_settings().passive
