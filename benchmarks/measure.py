"""Wall time, CPU time and exact peak memory of named steps of one process, and machine facts.

Before each step the kernel's RSS high-water mark is reset (``echo 5 > /proc/self/clear_refs``)
and ``VmHWM`` is read after it: an exact per-step peak of the whole process. Where the reset is not
permitted, a thread samples ``/proc/self/statm`` every 5 ms instead (short spikes can be missed);
:attr:`StepRecorder.method` says which was used.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from contextlib import contextmanager

#: Memory kept free when deciding whether a pipeline fits (bytes).
MEMORY_HEADROOM = 3 * 2**30

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the process's RSS high-water mark (VmHWM); False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _RssSampler:
    """Thread that samples the RSS from ``/proc/self/statm`` every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self._page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def start(self) -> _RssSampler:
        self.peak = self._rss()
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._rss())


class StepRecorder:
    """Wall time and peak RSS of named steps; a step may run many times (summed / maxed).

    Attributes
    ----------
    steps : dict
        ``name -> {"time_s", "cpu_s", "peak_bytes", "calls"}`` in first-use order (``cpu_s``: CPU
        time of all threads of the process, ``time.process_time``).
    method : str
        How the peaks were measured.
    """

    def __init__(self):
        self.steps: dict[str, dict] = {}
        self.method = "VmHWM after resetting it through /proc/self/clear_refs"

    @contextmanager
    def step(self, name: str):
        reset = _reset_peak()
        sampler = None
        if not reset:
            self.method = "RSS sampled every 5 ms from /proc/self/statm"
            sampler = _RssSampler().start()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            peak = _status_kib("VmHWM") * 1024 if reset else sampler.stop()
            rec = self.steps.setdefault(name, {"time_s": 0.0, "cpu_s": 0.0, "peak_bytes": 0, "calls": 0})
            rec["time_s"] += dt
            rec["cpu_s"] += dc
            rec["peak_bytes"] = max(rec["peak_bytes"], peak)
            rec["calls"] += 1


def memory_budget_bytes() -> int:
    """Memory a benchmark step may use: MemAvailable minus :data:`MEMORY_HEADROOM`."""
    info = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            k, v = line.split(":", 1)
            info[k] = int(v.split()[0]) * 1024
    return max(int(info.get("MemAvailable", info.get("MemTotal", 0))) - MEMORY_HEADROOM, 0)


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer")
    return [{**{k: d.get(k) for k in keep}, "library": os.path.basename(d.get("filepath") or "")}
            for d in threadpool_info()]


def limit_numba(threads: int) -> None:
    try:
        import numba
    except ImportError:
        return
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) * 1024
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "python": platform.python_version(),
            "platform": platform.platform()}
