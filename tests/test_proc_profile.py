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
