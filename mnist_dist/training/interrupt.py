"""How `mnist-dist train` stops on Ctrl-C (SIGINT) or SIGTERM: as a KeyboardInterrupt in
the main thread, which the command answers by saying how to continue and exiting as a
shell reports the signal (130, 143).

`kill`, `timeout` and batch schedulers send SIGTERM, whose default ends the process on the
spot, between any two writes; here it stops the run as Ctrl-C does. While an epoch's files
are written (`held()`), either signal waits until they all are: a run folder never holds
one epoch's resume.pt beside another's model.pt.
"""
from __future__ import annotations

import contextlib
import signal
import threading

from ..errors import INTERRUPTED, TERMINATED

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """The signals that stopped a run, and the handler that turns them into KeyboardInterrupt."""

    def __init__(self):
        self.received: list[int] = []
        self._holding = False
        self._pending = False
        self._replaced: dict[int, object] = {}

    @contextlib.contextmanager
    def installed(self):
        """Our handler for SIGINT and SIGTERM within the block, the ones found before after it.
        Python sets handlers only in the main thread; elsewhere the defaults stay."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        self._replaced = {s: signal.signal(s, self._handle) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, found in self._replaced.items():
                signal.signal(s, found if found is not None else signal.SIG_DFL)

    def _handle(self, signum, frame) -> None:
        self.received.append(signum)
        if self._holding:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self):
        """A signal within the block stops the run when the block ends."""
        self._holding, self._pending = True, False
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def exit_code(self) -> int:
        """What a shell reports for the signal that stopped the run: 143 for SIGTERM, 130 for
        Ctrl-C (also for a KeyboardInterrupt no handler of ours saw)."""
        return TERMINATED if signal.SIGTERM in self.received else INTERRUPTED
