"""statmorph's own test suite, run against plain statmorph and against the fast class.

statmorph ships its tests (``statmorph/tests/test_statmorph.py``, the repository's tests at the installed
tag) with their reference galaxy (``data/slice.fits``, a float32 image). Every test function and every
method of ``TestSourceMorphology`` is run twice: as written, and with ``statmorph.SourceMorphology`` (the
name the tests call, and the one ``statmorph.source_morphology`` uses) replaced by
:class:`~features.morphometrics.fast.FastSourceMorphology` for the test's duration. The two columns side
by side show where the fast path and statmorph differ: nowhere.

The three reference-value tests fail for plain statmorph as installed: the single-Sersic fit ends
2.3e-5 relative from statmorph's committed ``sersic_n`` (0.61205398 against 0.61206828; the later
``sersic_ellip`` is 1.3e-4 off and the double-Sersic values up to 3.3e-4), a drift of the fit with the
installed astropy/scipy, beyond the suite's ``rtol=1e-5``. Those cases are strict xfails that accept only
that failure (any other value out of tolerance fails the test), and the same tests are run again on every
non-Sersic reference value, which both classes must meet.
"""

from __future__ import annotations

import faulthandler
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import statmorph
from statmorph.tests import test_statmorph as suite

from features.morphometrics.fast import FastSourceMorphology

IMPLEMENTATIONS: dict[str, type[statmorph.SourceMorphology]] = {
    "statmorph": statmorph.SourceMorphology,
    "fast": FastSourceMorphology,
}
REFERENCE_TESTS: tuple[str, ...] = ("test_no_psf", "test_psf", "test_weightmap")
"""Methods of statmorph's ``TestSourceMorphology`` that compare every value with its committed references."""

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_HANG_S = 300  # far beyond the whole suite's few seconds: only a deadlock gets there
_FUNCTIONS = sorted(n for n in dir(suite) if n.startswith("test_") and callable(getattr(suite, n)))
_METHODS = sorted(n for n in dir(suite.TestSourceMorphology) if n.startswith("test_"))


class SersicDrift(AssertionError):
    """statmorph's reference test failed on ``sersic_n`` and on nothing before it."""


def _expect_sersic_drift(run: Callable[[], None]) -> None:
    try:
        run()
    except AssertionError as exc:
        if "sersic_n value did not match" in str(exc):
            raise SersicDrift(str(exc)) from exc
        raise


def _reference_case(name: str) -> pytest.param:
    marks = ()
    if name in REFERENCE_TESTS:
        marks = pytest.mark.xfail(
            raises=SersicDrift, strict=True,
            reason="plain statmorph too: sersic_n 0.61205398 vs reference 0.61206828 (2.3e-5 relative > rtol 1e-5)")
    return pytest.param(name, marks=marks, id=f"TestSourceMorphology.{name}")


@pytest.fixture(autouse=True)
def _hang_guard() -> Iterator[None]:
    """A test that hangs (the fast class once deadlocked in place of statmorph's) dumps its stack and exits."""
    faulthandler.dump_traceback_later(_HANG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=list(IMPLEMENTATIONS))
def implementation(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[statmorph.SourceMorphology]:
    """The class statmorph's tests get as ``statmorph.SourceMorphology`` (and ``source_morphology`` uses)."""
    cls = IMPLEMENTATIONS[request.param]
    monkeypatch.setattr(statmorph, "SourceMorphology", cls)
    monkeypatch.setattr(statmorph.statmorph, "SourceMorphology", cls)
    return cls


def _reference_galaxy() -> suite.TestSourceMorphology:
    case = suite.TestSourceMorphology()
    case.setup_class()
    return case


@pytest.mark.parametrize("name", _FUNCTIONS)
def test_statmorph_function(implementation: type, name: str) -> None:
    getattr(suite, name)()


@pytest.mark.parametrize("name", [_reference_case(n) for n in _METHODS])
def test_statmorph_reference_galaxy(implementation: type, name: str) -> None:
    case = _reference_galaxy()
    assert case.image.dtype == np.dtype(">f4")  # the suite measures its FITS image as stored
    _expect_sersic_drift(getattr(case, name))


@pytest.mark.parametrize("name", REFERENCE_TESTS)
def test_statmorph_reference_galaxy_non_sersic(implementation: type, name: str) -> None:
    """statmorph's reference tests restricted to the values not from a profile fit (all of them meet rtol 1e-5)."""
    case = _reference_galaxy()
    case.correct_values = {k: v for k, v in case.correct_values.items() if "sersic" not in k}
    assert len(case.correct_values) == 45  # of 72: the 27 single- and double-Sersic values left out
    getattr(case, name)()


def test_fast_class_in_place_of_statmorph_finishes() -> None:
    """Replacing ``statmorph.SourceMorphology`` by the fast class (as a user may) must not make its fit re-enter itself.

    Run in a child process with a time limit, so a deadlock on the model-swap lock fails the test
    instead of hanging the run.
    """
    script = textwrap.dedent("""
        import warnings
        import numpy as np
        import statmorph
        from features.morphometrics.fast import FastSourceMorphology
        statmorph.SourceMorphology = statmorph.statmorph.SourceMorphology = FastSourceMorphology
        y, x = np.mgrid[0:41, 0:41]
        image = (np.exp(-np.hypot(x - 20.3, (y - 19.8) / 0.7) / 4.0)
                 + 1e-3 * np.random.default_rng(0).standard_normal((41, 41)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            morph = statmorph.source_morphology(image, (image > 0.02).astype(int), gain=1.0)[0]
        print(type(morph).__name__, morph.flag_sersic, morph.sersic_n)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    name, flag_sersic, sersic_n = done.stdout.split()
    assert name == "FastSourceMorphology" and int(flag_sersic) == 0
    assert 0.5 < float(sersic_n) < 2.0  # an exponential disk (n = 1) blurred by nothing
