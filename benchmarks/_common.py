"""Shared helpers for the benchmark scripts: threads, timing, peak memory, tables.

Every benchmark script in this folder follows the same pattern:

1. check that all methods agree before timing anything (a benchmark of wrong answers is
   worthless);
2. time each method in the same process with :func:`time_call` (a warm-up call, then the best
   of a few repeats, with the device synchronised around each call);
3. measure peak memory — on CUDA from the caching allocator's peak counter in-process
   (:func:`cuda_peak_bytes`), on CPU in a fresh subprocess of the same script (``--worker``) from
   the process's peak resident set size (see :func:`measure_rss_in_worker`);
4. print a Markdown table of times and of ratios against the baseline measured in the same run
   (:func:`markdown_table`), optionally write it to ``--out``.

The helpers only use the standard library and torch.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import torch

#: Prefix of the one line a ``--worker`` subprocess prints for its parent.
WORKER_TAG = "BENCH_WORKER_RESULT "

DTYPES = {"float64": torch.float64, "float32": torch.float32}
COMPLEX_OF = {torch.float64: torch.complex128, torch.float32: torch.complex64}


# ----------------------------------------------------------------------------- environment


def cpu_count() -> int:
    """CPU cores this process may run on (respects affinity masks and cgroup pinning)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def setup_torch(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: all cores this process has)."""
    threads = threads or cpu_count()
    torch.set_num_threads(threads)
    return threads


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def machine_info(device: str) -> list[str]:
    """Lines describing where the numbers come from (printed above every table)."""
    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"{platform.system()} {platform.machine()}",
        f"CPU cores available: {cpu_count()}, torch threads: {torch.get_num_threads()}",
    ]
    if device.startswith("cuda"):
        lines.append(f"device: {device} ({torch.cuda.get_device_name(torch.device(device))})")
    else:
        lines.append(f"device: cpu ({platform.processor() or 'unknown processor'})")
    lines.append(f"load average (1/5/15 min) at start: {load_average()}")
    return lines


# ----------------------------------------------------------------------------- timing


def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class Timing:
    """Wall-clock seconds of one method; ``extrapolated_from`` is set when ``seconds`` was
    scaled linearly from a run over fewer items (``measured_items`` of ``total_items``)."""

    seconds: float
    samples: list[float]
    measured_items: int | None = None
    total_items: int | None = None

    @property
    def extrapolated(self) -> bool:
        return self.measured_items is not None and self.measured_items != self.total_items

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def time_call(
    fn: Callable[[], object],
    *,
    repeats: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
) -> Timing:
    """Best of ``repeats`` timed calls of ``fn`` after ``warmup`` untimed ones.

    The device is synchronised before and after each call so that asynchronous CUDA work is
    counted. The best (minimum) is the least noisy estimate on a shared machine; the median is
    kept in ``samples`` too.
    """
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(max(1, repeats)):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        samples.append(time.perf_counter() - t0)
    return Timing(seconds=min(samples), samples=samples)


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 3,
    device: str | torch.device = "cpu",
) -> dict[str, Timing]:
    """Best of ``repeats`` rounds, each round timing every method once, in turn.

    Interleaving keeps the methods' ratios meaningful on a machine shared with other work: a
    burst of load slows one round of every method rather than all rounds of one.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append(time.perf_counter() - t0)
    return {name: Timing(seconds=min(s), samples=s) for name, s in samples.items()}


def extrapolate(timing: Timing, measured_items: int, total_items: int) -> Timing:
    """Scale a timing over ``measured_items`` linearly to ``total_items`` (a per-item loop)."""
    scale = total_items / measured_items
    return Timing(
        seconds=timing.seconds * scale,
        samples=[s * scale for s in timing.samples],
        measured_items=measured_items,
        total_items=total_items,
    )


# ----------------------------------------------------------------------------- peak memory


def _proc_status_bytes(field: str) -> int | None:
    """A ``VmXXX`` line of /proc/self/status in bytes (Linux), else None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak-RSS counter (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_peak_bytes() -> int:
    """Peak resident set size of this process's memory image so far.

    VmHWM from /proc/self/status on Linux; elsewhere ``getrusage``'s ``ru_maxrss``. Note that
    on Linux ``ru_maxrss`` is *inherited across fork + exec* (a child started from a large
    parent reports the parent's RSS as its own peak), so it is not used where VmHWM exists.
    """
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def rss_bytes() -> int | None:
    """Current resident set size (Linux), else None."""
    return _proc_status_bytes("VmRSS")


def cuda_peak_bytes(fn: Callable[[], object], device: str | torch.device) -> int:
    """Peak CUDA memory allocated by ``fn`` above what was allocated before it (in-process)."""
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def worker_report(**fields) -> None:
    """Print the one result line a ``--worker`` subprocess hands back to :func:`run_worker`."""
    print(WORKER_TAG + json.dumps(fields), flush=True)


def run_worker(script: str, args: Sequence[str], timeout: float = 900) -> dict:
    """Run ``python script *args`` in a fresh interpreter and return its worker report.

    Used for CPU peak memory: a fresh process holds no memory from earlier methods (no cached
    blocks, no freed-but-resident heap), so its peak-RSS growth is the method's own.
    """
    proc = subprocess.run(
        [sys.executable, script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark worker {' '.join(args)} failed with exit code {proc.returncode}:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    for line in proc.stdout.splitlines():
        if line.startswith(WORKER_TAG):
            return json.loads(line[len(WORKER_TAG) :])
    raise RuntimeError(f"benchmark worker {' '.join(args)} printed no result:\n{proc.stdout}")


def measure_rss_in_worker(fn: Callable[[], object], warmup: Callable[[], object] | None) -> dict:
    """Inside a worker: how much ``fn`` raises the process's peak RSS.

    Imports, data creation and an optional tiny ``warmup`` call (which loads lazily initialised
    code paths) happen first. Then, where Linux allows it, the peak counter is reset to the
    current RSS and the result is (peak during ``fn``) − (RSS before ``fn``); otherwise it is
    the peak after ``fn`` minus the peak before it (which undercounts when the setup's own peak
    was higher). ``how`` in the result says which was used.
    """
    if warmup is not None:
        warmup()
    gc.collect()
    before = rss_bytes()
    if before is not None and reset_peak_rss():
        how = "VmHWM reset via /proc/self/clear_refs, minus VmRSS before the call"
        baseline = before
    else:
        how = "peak RSS after the call minus peak RSS before it"
        baseline = rss_peak_bytes()
    fn()
    peak = rss_peak_bytes()
    return {
        "baseline_bytes": baseline,
        "peak_bytes": peak,
        "delta_bytes": peak - baseline,
        "how": how,
    }


# ----------------------------------------------------------------------------- formatting


def format_seconds(seconds: float) -> str:
    if seconds >= 100:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def format_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    if n < 0:
        n = 0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_ratio(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:.0f}×"
    if ratio >= 10:
        return f"{ratio:.1f}×"
    return f"{ratio:.2f}×"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table with columns padded for reading as plain text."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def write_text(path: str | None, text: str) -> None:
    if path:
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")


# -- closed-form geodesic distances (docs/conventions.md § Closed forms): the oracles of the
# geodesic benchmarks


def fs_dist(z, w):
    """Fubini–Study distance in the affine chart of CP^n:
    arccos(|1 + w̄·z| / √((1+|z|²)(1+|w|²)))."""
    ip = (1 + (z.conj() * w).sum(-1)).abs()
    nz = 1 + (z.real**2 + z.imag**2).sum(-1)
    nw = 1 + (w.real**2 + w.imag**2).sum(-1)
    return torch.arccos((ip / torch.sqrt(nz * nw)).clamp(max=1))


def ball_dist(z, w):
    """Distance of the complex hyperbolic ball B^n (curvature convention of docs/conventions.md)."""
    nz = 1 - (z.real**2 + z.imag**2).sum(-1)
    nw = 1 - (w.real**2 + w.imag**2).sum(-1)
    ip = 1 - (z.conj() * w).sum(-1)
    return torch.atanh(torch.sqrt(1 - nz * nw / (ip.real**2 + ip.imag**2)))
