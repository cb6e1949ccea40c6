"""Run a command and measure it: wall, CPU seconds, CPU utilisation and peak RSS of its process tree,
and the same split per Dagster step from the run records in its warehouse.

Usage (the demo, before/after a change; under the shared heavy lock)::

    flock /tmp/astrovision-heavy.lock .venv/bin/python benchmarks/proc_profile.py --home /tmp/demo-prof \\
        --json /tmp/demo-prof.json -- .venv/bin/astrovision --home /tmp/demo-prof demo

How it measures:

- total CPU seconds: the ``rusage`` of every process of the tree (exact, not sampled). ``os.wait4`` of the
  command alone counts only the descendants whose parents waited for them: a process pool's workers
  under a ``forkserver`` that exits without reaping them were lost that way (the 1,000-galaxy rehearsal:
  695 CPU-s by the command's rusage against 1,056 sampled). So the profiler makes itself the tree's
  *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``): an orphaned descendant is re-parented to it
  and reaped here, and the total is the profiler's ``RUSAGE_CHILDREN`` over the run;
- a time series sampled every ``--interval`` seconds with psutil over the command's process tree: the
  CPU seconds of every process seen (by pid and start time, so a dead process keeps its last sample) and
  the sum of their resident sets (peak RSS of the tree, not of the largest process);
- per step: each Dagster step's window (``STEP_START`` to ``STEP_SUCCESS`` / ``STEP_FAILURE`` in the
  instance under ``<home>/dagster``); the sampled CPU of each interval is shared among the steps running
  in it (equally), so overlapping steps of parallel shard runs split what the tree used. CPU outside
  every step (rendering the demo survey, registering the source, run start-up) is its own row.

CPU utilisation is CPU seconds / wall seconds / cores (1.0 = every core busy).
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["Sample", "TreeSampler", "main", "run_measured", "step_windows", "table"]


@dataclass(frozen=True)
class Sample:
    """One sample of the tree: seconds since start, CPU seconds used so far, resident bytes now."""

    t: float
    cpu_s: float
    rss: int


@dataclass
class TreeSampler:
    """Samples a process and its descendants in a background thread (psutil); with ``orphans``, every
    descendant of this (subreaper) process instead, so the command's re-parented orphans count too."""

    pid: int
    interval: float = 0.5
    orphans: bool = False
    skip: frozenset[tuple[int, float]] = frozenset()
    """``(pid, create_time)`` of processes (and their descendants) not to count: the profiler's own."""
    samples: list[Sample] = field(default_factory=list)
    _cpu: dict[tuple[int, float], float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _once(self, t0: float) -> None:
        try:
            if self.orphans:
                procs = [p for p in psutil.Process().children(recursive=True) if not self._skipped(p)]
            else:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        rss = 0
        for p in procs:
            try:
                with p.oneshot():
                    c = p.cpu_times()
                    key = (p.pid, p.create_time())
                    self._cpu[key] = max(self._cpu.get(key, 0.0), c.user + c.system)
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
        self.samples.append(Sample(time.perf_counter() - t0, sum(self._cpu.values()), rss))

    def _skipped(self, p: psutil.Process) -> bool:
        try:
            return any((q.pid, q.create_time()) in self.skip for q in [p, *p.parents()])
        except psutil.Error:
            return True

    def run(self, t0: float) -> None:
        while not self._stop.is_set():
            self._once(t0)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()


PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def _set_subreaper(on: bool) -> bool:
    """Make this process the child subreaper of what it starts, or stop being one (Linux); False where
    that is not possible."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _is_subreaper() -> bool:
    try:
        flag = ctypes.c_int(0)
        ok = ctypes.CDLL(None, use_errno=True).prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) == 0
        return ok and bool(flag.value)
    except (OSError, AttributeError):
        return False


def _become_subreaper() -> bool:
    """Make this process the child subreaper of what it starts (Linux); False where that is not possible."""
    return _set_subreaper(True)


def _children() -> set[tuple[int, float]]:
    """``(pid, create_time)`` of this process's children, zombies included (not reaped yet: they are
    waited for, as their CPU reaches this process's ``rusage`` only then)."""
    out = set()
    for p in psutil.Process().children():
        try:
            out.add((p.pid, p.create_time()))
        except psutil.Error:
            continue
    return out


def _reap_orphans(grace_s: float = 30.0, keep: frozenset[tuple[int, float]] = frozenset()) -> int:
    """Reap the descendants re-parented to this process (waiting up to ``grace_s`` for the running ones);
    how many were reaped. ``keep``: children this process had before the command started (a pool of its
    own, e.g. the rehearsal's renderer), which are not waited for."""
    reaped, deadline = 0, time.monotonic() + grace_s
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid:
            reaped += 1
        elif not (_children() - keep) or time.monotonic() > deadline:
            return reaped
        else:
            time.sleep(0.05)


def _children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run_measured(cmd: list[str], interval: float = 0.5, env: dict | None = None) -> dict:
    """Run ``cmd``; its exit status, wall, exact CPU of the whole tree (rusage, orphans included where the
    profiler can be their subreaper), sampled series and start epoch."""
    was_subreaper = _is_subreaper()
    subreaper = _become_subreaper()
    try:
        return _run(cmd, interval, env, subreaper)
    finally:
        if subreaper and not was_subreaper:  # leave the caller as it was: later orphans of its other
            _set_subreaper(False)            # children (a test process's) go to init, not to it


def _run(cmd: list[str], interval: float, env: dict | None, subreaper: bool) -> dict:
    own = frozenset(_children())  # e.g. the rehearsal renderer's forkserver: not the command's
    cpu0 = _children_cpu()
    epoch0 = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    sampler = TreeSampler(proc.pid, interval, orphans=subreaper, skip=own)
    thread = threading.Thread(target=sampler.run, args=(t0,), daemon=True)
    thread.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    orphans = _reap_orphans(keep=own) if subreaper else 0
    sampler.stop()
    thread.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampled = sampler.samples[-1].cpu_s if sampler.samples else 0.0
    return {"cmd": cmd, "rc": proc.returncode, "wall_s": wall, "cpu_s": _children_cpu() - cpu0,
            "cpu_s_command_only": usage.ru_utime + usage.ru_stime, "cpu_s_sampled": sampled,
            "subreaper": subreaper, "orphans_reaped": orphans,
            "epoch0": epoch0, "samples": [(s.t, s.cpu_s, s.rss) for s in sampler.samples],
            "peak_rss": max((s.rss for s in sampler.samples), default=0),
            "max_rss_one_process_kb": usage.ru_maxrss}


def step_windows(home: Path, epoch0: float) -> list[dict]:
    """Every step of every run in ``home``'s Dagster instance: asset/step key, partition, start, end
    (seconds since ``epoch0``)."""
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from dagster_project.runner import instance_for
    from warehouse import Warehouse

    instance = instance_for(Warehouse.open(home))
    out = []
    for run in instance.get_runs():
        started: dict[str, float] = {}
        part = run.tags.get("dagster/partition", "")
        for entry in instance.all_logs(run.run_id):
            ev = entry.dagster_event
            if ev is None:
                continue
            if ev.event_type == dg.DagsterEventType.STEP_START:
                started[ev.step_key] = entry.timestamp
            elif ev.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                s = started.pop(ev.step_key, None)
                if s is not None:
                    out.append({"step": ev.step_key, "partition": part, "start": s - epoch0,
                                "end": entry.timestamp - epoch0})
    return sorted(out, key=lambda w: w["start"])


def _rates(samples: list[tuple[float, float, int]]) -> list[tuple[float, float, float, int]]:
    """Intervals ``(t0, t1, cpu_s used in it, rss at t1)`` of the sampled series."""
    return [(a[0], b[0], max(b[1] - a[1], 0.0), b[2]) for a, b in itertools.pairwise(samples)]


def per_step(measured: dict, windows: list[dict]) -> dict[str, dict]:
    """Wall (sum over partitions of the step windows), CPU seconds and peak tree RSS per step key;
    ``(outside steps)`` gets the CPU of intervals when no step ran while the command did, and
    ``(after exit)`` (only when there are any) the intervals after it exited, when the profiler was waiting
    for orphaned descendants (:func:`_reap_orphans`): not part of the command's wall time."""
    rows: dict[str, dict] = {}
    for w in windows:
        r = rows.setdefault(w["step"], {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss": 0, "runs": 0,
                                        "first": w["start"], "last": w["end"]})
        r["wall_s"] += w["end"] - w["start"]
        r["runs"] += 1
        r["first"], r["last"] = min(r["first"], w["start"]), max(r["last"], w["end"])
    outside = {"wall_s": 0.0, "cpu_s": 0.0, "peak_rss": 0, "runs": 0}
    after = dict(outside)
    for t0, t1, cpu, rss in _rates(measured["samples"]):
        mid = (t0 + t1) / 2
        live = [w for w in windows if w["start"] <= mid < w["end"]]
        if not live:
            row = after if mid >= measured["wall_s"] else outside
            row["cpu_s"] += cpu
            row["wall_s"] += t1 - t0
            row["peak_rss"] = max(row["peak_rss"], rss)
            continue
        for w in live:
            r = rows[w["step"]]
            r["cpu_s"] += cpu / len(live)
            r["peak_rss"] = max(r["peak_rss"], rss)
    rows["(outside steps)"] = outside
    if after["wall_s"]:
        rows["(after exit)"] = after
    return rows


def table(measured: dict, steps: dict[str, dict], cores: int) -> str:
    """A Markdown table per step plus the whole command."""
    lines = ["| step | runs | wall s (sum) | CPU s | CPU / wall / cores | peak tree RSS GB |",
             "|---|---|---|---|---|---|"]
    for name, r in sorted(steps.items(), key=lambda kv: -kv[1]["wall_s"]):
        util = r["cpu_s"] / r["wall_s"] / cores if r["wall_s"] else 0.0
        lines.append(f"| {name} | {r['runs']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {util:.0%} | "
                     f"{r['peak_rss'] / 1e9:.2f} |")
    util = measured["cpu_s"] / measured["wall_s"] / cores
    lines.append(f"| **whole command** | | **{measured['wall_s']:.1f}** | **{measured['cpu_s']:.1f}** | "
                 f"**{util:.0%}** | **{measured['peak_rss'] / 1e9:.2f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="the warehouse the command writes (its Dagster runs)")
    ap.add_argument("--json", type=Path, help="write everything measured here")
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command")
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give the command after --")
    load0 = os.getloadavg()
    measured = run_measured(cmd, args.interval)
    measured["load_before"], measured["load_after"] = load0, os.getloadavg()
    if args.json:  # kept even if reading the runs fails
        args.json.write_text(json.dumps(measured))
    windows = step_windows(args.home, measured["epoch0"])
    steps = per_step(measured, windows)
    cores = psutil.cpu_count() or 1
    print(f"\n# {' '.join(cmd)}\n# exit {measured['rc']}; {cores} cores; load average before "
          f"{load0[0]:.1f}, after {measured['load_after'][0]:.1f}\n")
    print(table(measured, steps, cores))
    if args.json:
        args.json.write_text(json.dumps({**measured, "windows": windows, "steps": steps, "cores": cores}))
    return measured["rc"]


if __name__ == "__main__":
    raise SystemExit(main())
