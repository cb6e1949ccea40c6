"""The benchmark profiler's CPU accounting: an orphaned descendant's CPU is counted (issue 25)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from proc_profile import run_measured

ORPHAN = textwrap.dedent("""
    import os, time
    pid = os.fork()
    if pid == 0:
        if os.fork() == 0:  # the grandchild burns 0.5 CPU-s after its parent exited unwaited-for
            t = time.process_time()
            while time.process_time() - t < 0.5:
                pass
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
""")


def test_orphans_cpu_is_counted(tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    m = run_measured([sys.executable, str(script)], interval=0.05)
    assert m["rc"] == 0
    assert m["subreaper"] and m["orphans_reaped"] == 1
    # the command's own rusage misses the orphan; the subreaper's counts it
    assert m["cpu_s_command_only"] < 0.4
    assert m["cpu_s"] >= 0.5


def test_the_profiler_leaves_its_caller_no_subreaper(tmp_path: Path) -> None:
    """After a measurement, orphans of the caller's other children go to init again, not to the caller
    (a test process that measured once would otherwise collect every later test's orphans)."""
    from proc_profile import _is_subreaper

    assert not _is_subreaper()
    assert run_measured([sys.executable, "-c", "pass"], interval=0.05)["subreaper"]
    assert not _is_subreaper()


def test_time_after_the_command_exits_is_not_outside_steps() -> None:
    """Samples taken while the profiler waits for orphans (after the command's wall) get their own row."""
    from proc_profile import per_step

    samples = [(t * 0.5, t * 0.5, 100) for t in range(21)]  # 10 s, one core busy throughout
    measured = {"wall_s": 6.0, "samples": samples}
    rows = per_step(measured, [{"step": "cnn", "start": 1.0, "end": 5.0}])
    assert rows["cnn"]["wall_s"] == 4.0 and rows["cnn"]["cpu_s"] == 4.0
    assert rows["(outside steps)"]["wall_s"] == 2.0  # 0-1 s and 5-6 s
    assert rows["(after exit)"]["wall_s"] == 4.0 and rows["(after exit)"]["cpu_s"] == 4.0
    assert "(after exit)" not in per_step({"wall_s": 10.0, "samples": samples}, [])


def test_the_profilers_own_children_are_neither_waited_for_nor_counted() -> None:
    """A process the profiler started before the command (the rehearsal's renderer pool) is not the command's."""
    import subprocess
    import time

    own = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(80_000_000); time.sleep(60)"])
    try:
        time.sleep(1.0)  # its 80 MB are resident before the command starts
        t0 = time.perf_counter()
        m = run_measured([sys.executable, "-c", "pass"], interval=0.05)
        assert time.perf_counter() - t0 < 20  # not the 30 s grace for orphans
        assert m["rc"] == 0 and m["orphans_reaped"] == 0
        assert m["peak_rss"] < 60_000_000  # the command's tree alone
    finally:
        own.kill()
        own.wait()
