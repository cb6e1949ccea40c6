"""Background imports at the start of an in-process command (features.parallel.warm_imports)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from dagster_project.plan import AssetNode
from dagster_project.runner import WARM_FIRST, WARM_IMPORTS, modules_to_warm


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_warm_imports_loads_in_a_thread_and_skips_what_is_loaded_or_missing():
    got = _run("""
        import json, sys
        from features.parallel import warm_imports
        assert "colorsys" not in sys.modules
        t = warm_imports(["colorsys", "no_such_module_here", "json"])
        t.join(60)
        again = warm_imports(["colorsys", "json"])
        print(json.dumps({"name": t.name, "daemon": t.daemon, "loaded": "colorsys" in sys.modules,
                          "missing": "no_such_module_here" in sys.modules, "again": again is None}))
    """)
    assert got == {"name": "warm-imports", "daemon": True, "loaded": True, "missing": False, "again": True}


def test_modules_to_warm_follow_the_selected_assets_kinds_and_names():
    torch_stack = list(WARM_IMPORTS["pytorch"])
    ingest = {"galaxies": AssetNode(True, kinds=frozenset({"lance"})),
              "morphometrics": AssetNode(True, ("galaxies",), kinds=frozenset({"lance"}))}
    assert modules_to_warm(ingest) == []
    both = {**ingest, "cnn": AssetNode(False, kinds=frozenset({"pytorch"})),
            "ssl_encoder": AssetNode(False, kinds=frozenset({"pytorch"})),
            "embedding_index": AssetNode(False, kinds=frozenset({"lance"}))}
    assert modules_to_warm(both) == [*torch_stack, "lancedb"]


def test_warmed_libraries_share_no_modules_with_the_shard_steps_imports():
    """Two threads importing into one cycle from opposite ends can see a half-initialized module, so what is
    warmed during the shard steps must not overlap what those steps import, beyond what the runner imports
    first in its own thread (WARM_FIRST), numpy and the standard library (loaded before either starts)."""
    closure = """
        import json, sys
        import dagster_project.runner, service.cli
        before = set(sys.modules)
        for name in {names!r}:
            __import__(name)
        print(json.dumps(sorted(set(sys.modules) - before)))
    """
    warmed = set(_run(closure.format(names=[m for ms in WARM_IMPORTS.values() for m in ms])))
    shard = set(_run(closure.format(names=["features.morphometrics", "stages.morphometrics", "statmorph",
                                           "photutils.segmentation", "stages.ingest", "stages.photometry",
                                           "features.sources.galaxy10", "features.sources.synthetic"])))
    first = set(_run(closure.format(names=list(WARM_FIRST))))
    assert "torch" in warmed and "statmorph" in shard and "PIL.Image" in first
    stdlib = set(sys.stdlib_module_names)
    shared = {m for m in (warmed & shard) - first if m.split(".")[0] not in stdlib | {"numpy", "_multiprocessing"}}
    assert not shared, f"imported by the warm-up and the shard steps alike; add to WARM_FIRST: {sorted(shared)}"
