"""A killed command leaves no pool workers behind (issue: nothing lost, nothing leaked).

A ``forkserver`` pool's workers hold both ends of their task queue's pipe, so when the process that owns
the pool is killed (``kill -9``, SIGTERM's default action, the OOM killer) they would wait on it forever,
and the fork server with them. Each product pool is started here in a real process, which is then
killed with SIGKILL; its workers and fork server must be gone within seconds
(:func:`features.parallel.exit_with_owner`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = f"import os, sys, time\nsys.path.insert(0, {str(ROOT)!r})\n"

POOLS = {
    "ordered_pool": """
        from features.parallel import ordered_pool
        with ordered_pool(2) as pmap:
            pmap(abs, [-1, -2, -3, -4])
            print("ready", flush=True)
            time.sleep(600)
    """,
    "morphometrics": """
        import numpy as np
        from features.morphometrics.batch import MorphInput, measure_batch

        def items():
            rng = np.random.default_rng(0)
            for i in range(2):
                yield MorphInput(f"g{i}", rng.normal(0, 1, (32, 32)).astype(np.float32), "flux", "r", 0.262, None)
            print("ready", flush=True)
            time.sleep(600)  # the pool waits for more galaxies

        measure_batch(items(), bands=("r",), workers=2)
    """,
    "renderer": """
        from features.sources.synthetic import SyntheticSurvey
        for batch in SyntheticSurvey(n=200, size=64).iter_batches(0, 200, batch_size=8, workers=2):
            print("ready", flush=True)
            time.sleep(600)
    """,
}


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server and /proc are Linux's")
@pytest.mark.parametrize("pool", sorted(POOLS))
def test_pool_workers_end_when_their_owner_is_killed(pool):
    script = PRELUDE + textwrap.dedent(POOLS[pool])
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=lambda: signal.signal(
                                signal.SIGTERM, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().strip() == "ready", f"{pool}: the pool did not start"
        children = psutil.Process(proc.pid).children(recursive=True)
        workers = [c for c in children if "forkserver" in " ".join(c.cmdline())]
        assert len(workers) >= 2, f"{pool}: expected a fork server and its workers, got {children}"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 20
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [w for w in alive if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    for w in alive:
        w.kill()
    assert not alive, f"{pool}: {len(alive)} pool process(es) outlived their owner: {[w.pid for w in alive]}"
