"""Loading the Dagster definitions must not import torch, scikit-learn or statmorph.

Every process that loads the code location pays for what the asset modules import at module level
(``astrovision ingest``, ``dagster dev``, every in-process run); the heavy libraries belong inside
the asset bodies. A fresh interpreter is used because the test session itself imports them.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn", "statmorph", "timm", "astropy")

PROBE = f"""
import json, sys
from dagster_project.definitions import defs
repo = defs.get_repository_def()
keys = sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys())
print(json.dumps({{"loaded": [m for m in {HEAVY!r} if m in sys.modules], "assets": keys}}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_definitions_do_not_import_heavy_libraries(probe):
    assert probe["loaded"] == []


def test_definitions_still_hold_the_heavy_assets(probe):
    assert {"embeddings", "morphometrics", "photometry", "splits", "cnn", "dinov2_probe",
            "predictions"} <= set(probe["assets"])


def test_models_package_is_lazy_but_complete():
    code = (
        "import sys, types, models, models.splits\n"
        "light = not any(m in sys.modules for m in ('torch', 'sklearn'))\n"
        "import models.config  # imports the submodule models.fit, which must not shadow the function\n"
        "from models import check_no_leak, fit, make_config\n"
        "print(light, not isinstance(fit, types.ModuleType), models.fit is fit, fit.__module__,\n"
        "      all(hasattr(models, n) for n in models.__all__))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "True", "True", "models.fit", "True"]


def test_unknown_models_attribute_raises():
    import models

    with pytest.raises(AttributeError, match="no_such_name"):
        models.no_such_name  # noqa: B018
