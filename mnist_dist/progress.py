"""Progress of a long task for a person to read: images of an epoch, trials of a sweep.

`Progress(total, desc, unit)` takes absolute counts (`update(done)`), so a caller that
samples a counter now and then needs no bookkeeping. The display is tqdm's:

- on a terminal, a live bar (redrawn at most every 0.5 s) with done/total, rate and ETA;
- elsewhere (CI logs, files, pipes), plain lines without carriage returns or escape
  codes: one every `every` seconds, and one at 100% once any line was printed. A task
  shorter than `every` prints nothing; the caller's own summary line says it all.

Reaching the total is always shown, so a finished task ends at 100%.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

LIVE_REFRESH_S = 0.5  # the bar's redraw interval; tqdm's default (0.1 s) is needlessly busy
# tqdm's own layout with exact counts ("20,000/54,000 img"); the unit comes with its
# leading space (" img" -> "2.11k img/s")
FORMAT = "{desc}: {percentage:3.0f}%%%s {n:,}/{total:,}{unit} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
# for a task whose units differ in length (a sweep's trials): the caller says the time left
OWN_ETA_FORMAT = "{desc}: {percentage:3.0f}%%%s {n:,}/{total:,}{unit} [{elapsed} elapsed{postfix}]"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_seconds(seconds: float) -> str:
    """'1:23:20', '01:15': tqdm's own notation, as in the bar's ETA."""
    return tqdm.format_interval(max(seconds, 0))


class Progress:
    """One task's progress, shown on `stream` (default: stdout at the time of the call)."""

    def __init__(self, total: int, desc: str = "", unit: str = " it", stream: TextIO | None = None,
                 live: bool | None = None, every: float = 30.0, leave: bool = True,
                 unit_scale: bool = True, initial: int = 0, own_eta: bool = False):
        self.stream = stream or sys.stdout
        # own_eta: no rate and ETA from the count (the caller's postfix says the time left)
        fmt = OWN_ETA_FORMAT if own_eta else FORMAT
        self.bar_format, self.line_format = fmt % "|{bar}|", fmt % ""
        self.live = is_terminal(self.stream) if live is None else live
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.unit_scale = unit_scale  # rates as "2.11k" rather than "2110.52"
        # initial: units done before this display started (a resumed sweep's finished
        # trials); they count towards the total but not towards the rate and the ETA
        self.initial = initial
        self.done, self.postfix, self.lines, self._printed = initial, "", 0, None
        self.start = self._last_line = time.monotonic()
        self._bar = (tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=leave, initial=initial,
                          unit_scale=unit_scale, dynamic_ncols=True, mininterval=LIVE_REFRESH_S,
                          smoothing=0, bar_format=self.bar_format) if self.live else None)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def rate(self) -> float | None:
        """Units per second since the start (None before the first unit)."""
        done = self.done - self.initial
        return done / self.elapsed if done > 0 and self.elapsed > 0 else None

    @property
    def remaining_s(self) -> float | None:
        rate = self.rate
        return (self.total - self.done) / rate if rate else None

    def update(self, done: int, postfix: str | None = None, desc: str | None = None) -> None:
        """Set the count (and optionally the text around it); reaching the total always
        shows, so a finished task ends at 100% however it was sampled."""
        self.done = done
        self.postfix = self.postfix if postfix is None else postfix
        self.desc = self.desc if desc is None else desc
        finished = done >= self.total
        if self._bar is not None:
            self._bar.set_description_str(self.desc, refresh=False)
            self._bar.set_postfix_str(self.postfix, refresh=False)
            self._bar.update(done - self._bar.n)  # redraws when LIVE_REFRESH_S has passed
            if finished:
                self._bar.refresh()
        elif time.monotonic() - self._last_line >= self.every or (finished and self.lines):
            self._print_line()

    def line(self) -> str:
        """The plain-text state, as the non-terminal lines show it."""
        return tqdm.format_meter(self.done, self.total, self.elapsed, prefix=self.desc, unit=self.unit,
                                 unit_scale=self.unit_scale, bar_format=self.line_format, initial=self.initial,
                                 postfix=self.postfix or None)

    def close(self) -> None:
        """End the display: a live bar is redrawn (or cleared, with leave=False); plain
        output gets a last line with the final count, if it printed any and not this one."""
        if self._bar is not None:
            self._bar.close()
        elif self.lines and self._printed != self.done:
            self._print_line()

    def _print_line(self) -> None:
        if self._printed == self.done and self.done >= self.total:
            return  # the 100% line is printed once
        print(self.line(), file=self.stream, flush=True)
        self._last_line, self._printed, self.lines = time.monotonic(), self.done, self.lines + 1
