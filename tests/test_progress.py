"""What a long step tells the person waiting (issue 23 item 14): done / total, rate, ETA, in the bar and
the log; library warnings counted and said once per shard."""

from __future__ import annotations

import warnings

import numpy as np

from features.morphometrics import MorphInput, MorphOptions, measure_one, summarise_warnings, tally_warnings
from stages.progress import Progress, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_progress_logs_every_tenth_and_every_ten_seconds_with_rate_and_eta():
    clock, lines = FakeClock(), []
    p = Progress(100, "morphometrics s-00000", log=lines.append, bar=False, clock=clock)
    for _ in range(9):  # 2 s a galaxy: no 10 % mark yet, but 10 s passed at the 5th -> one line by time
        clock.t += 2.0
        p.update()
    assert lines == ["morphometrics s-00000: 5/100 galaxies (5%), 0.5 galaxies/s, ETA 3:10"]
    clock.t += 2.0
    p.update()  # 10 %: a line at the mark although only 2 s passed
    assert len(lines) == 2 and lines[-1].startswith("morphometrics s-00000: 10/100 galaxies (10%)")
    clock.t += 1.0
    p.update(5)
    assert len(lines) == 2  # neither 10 s nor the next mark
    clock.t += 100.0
    p.set(100)
    p.close()
    p.close()
    assert lines[-1] == "morphometrics s-00000: 100/100 galaxies (100%), 0.826 galaxies/s, done in 2:01"
    assert len(lines) == 3


def test_durations_and_an_empty_step():
    assert format_duration(59.6) == "1:00" and format_duration(3723) == "1:02:03"
    assert format_duration(float("nan")) == "?"
    lines: list[str] = []
    with Progress(0, "embeddings x", log=lines.append, bar=False):
        pass
    assert lines == ["embeddings x: 0/0 galaxies (100%), rate ?, done in 0:00"]


def test_library_warnings_are_caught_per_galaxy_and_summarised_once(monkeypatch):
    """photutils / statmorph warnings raised while measuring do not reach stderr; one line counts them."""
    import features.morphometrics.batch as batch

    def noisy(image, **kw):
        warnings.warn(f"The deblending mode of {int(image[0, 0])} source labels was changed", UserWarning,
                      stacklevel=1)
        warnings.warn("Mean flux is zero.", RuntimeWarning, stacklevel=1)
        return {"band": kw["band"], "flags": 0}

    monkeypatch.setattr(batch, "measure_image", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning escaping measure_one would raise here
        records = [r for k in (3, 12, 7) for r in measure_one(MorphInput(f"g{k}", np.full((8, 8), k)), ("r",),
                                                                  MorphOptions())]
    counts = tally_warnings(records)
    assert counts == {"UserWarning: The deblending mode of N source labels was changed": 3,
                      "RuntimeWarning: Mean flux is zero.": 3}
    assert all(batch.WARNINGS_KEY not in r for r in records)  # removed: not a table column
    line = summarise_warnings(counts, 3)
    assert line.startswith("6 library warning(s) over 3 galaxies: 3 x ") and "deblending" in line
    assert summarise_warnings(tally_warnings([]), 5) == "no library warnings over 5 galaxies"
