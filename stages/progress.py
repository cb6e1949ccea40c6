"""What a long step tells the person waiting: galaxies done / total, rate and time left.

One :class:`Progress` per long step (morphometrics, embeddings, image encoding of a shard) drives two
faces at once: a tqdm bar on stderr (what the CLI shows; ``TQDM_DISABLE=1`` hides it) and a log line
through the callable it is given (an asset passes ``context.log.info``, so a run launched from the
Dagster UI shows the same figures in its log) every ``every_s`` seconds or ``every_fraction`` of the
total, whichever comes first, and once at the end. No Dagster here: the log is any ``str`` callable.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from types import TracebackType

from tqdm.auto import tqdm

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``"1:02:03"`` / ``"2:03"`` for a number of seconds; ``"?"`` when it is not finite."""
    if not math.isfinite(seconds):
        return "?"
    s = round(max(seconds, 0.0))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Progress of one step over ``total`` galaxies: a tqdm bar and periodic log lines.

    Parameters
    ----------
    total : int
        Galaxies the step will handle.
    desc : str
        What is being done, e.g. ``"morphometrics gz1-00000"`` (starts every line).
    log : callable, optional
        Receives one line (see :meth:`line`) every ``every_s`` seconds or ``every_fraction`` of the
        total, and a last one at :meth:`close`.
    every_s : float
        Longest quiet time between two log lines while work goes on.
    every_fraction : float
        Also log each time this fraction of the total is passed (0.1: at 10 %, 20 %, ...).
    bar : bool
        Show the tqdm bar.
    clock : callable
        Seconds, monotonic (tests pass a fake one).

    Examples
    --------
    >>> with Progress(100, "morphometrics demo-00000", log=print, bar=False) as p:
    ...     p.update(100)  # doctest: +ELLIPSIS
    morphometrics demo-00000: 100/100 galaxies (100%), ... done in ...
    """

    def __init__(self, total: int, desc: str, *, log: Callable[[str], None] | None = None, every_s: float = 10.0,
                 every_fraction: float = 0.1, bar: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.done = 0
        self._log = log
        self._every_s = float(every_s)
        self._step = max(1, math.ceil(self.total * every_fraction)) if every_fraction > 0 else self.total + 1
        self._clock = clock
        self._start = clock()
        self._last_log = self._start
        self._next_mark = self._step
        off = {} if bar else {"disable": True}  # otherwise tqdm's own default, so TQDM_DISABLE=1 still hides it
        self._bar = tqdm(total=self.total, desc=desc, unit="gal", mininterval=1.0, dynamic_ncols=True, **off)
        self._closed = False

    @property
    def rate(self) -> float:
        """Galaxies per second so far (NaN before the first one)."""
        elapsed = self._clock() - self._start
        return self.done / elapsed if self.done and elapsed > 0 else math.nan

    @property
    def eta_s(self) -> float:
        """Seconds left at the rate so far (NaN before the first galaxy)."""
        rate = self.rate
        return (self.total - self.done) / rate if rate > 0 else math.nan

    def line(self) -> str:
        """``"<desc>: 120/1000 galaxies (12%), 0.85 galaxies/s, ETA 17:15"`` (``done in`` at the end)."""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.rate
        shown = f"{rate:.3g} galaxies/s" if math.isfinite(rate) else "rate ?"
        tail = (f"done in {format_duration(self._clock() - self._start)}" if self.done >= self.total
                else f"ETA {format_duration(self.eta_s)}")
        return f"{self.desc}: {self.done}/{self.total} galaxies ({pct:.0f}%), {shown}, {tail}"

    def update(self, n: int = 1) -> None:
        """``n`` more galaxies finished."""
        self.set(self.done + int(n))

    def set(self, done: int) -> None:
        """``done`` galaxies finished in all (for callbacks that count themselves, ``progress(done, total)``)."""
        done = min(int(done), self.total) if self.total else int(done)
        if done > self.done:
            self._bar.update(done - self.done)
            self.done = done
        now = self._clock()
        if self._log is None or self.done >= self.total:
            return
        if now - self._last_log >= self._every_s or self.done >= self._next_mark:
            self._log(self.line())
            self._last_log = now
            self._next_mark = (self.done // self._step + 1) * self._step

    def close(self) -> None:
        """Close the bar and log the last line (total, rate, time taken); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if self._log is not None:
            self._log(self.line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
