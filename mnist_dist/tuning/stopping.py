"""How a sweep stops on a signal: SIGTERM as Ctrl-C.

`kill`, `timeout` and a batch scheduler's time limit send SIGTERM. Ray's driver answers it
with a stack dump and an exit, leaving no summary and no resume command; Ctrl-C (SIGINT)
instead makes Tune stop the trials, keep the finished ones and return, and the sweep then
says how to resume. So once Ray has started, SIGTERM is turned into SIGINT.
"""
from __future__ import annotations

import signal
import threading

_received: list[int] = []  # the signals that stopped this process's sweep


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal.signal works only there


def stop_on_sigterm() -> None:
    """Install the SIGTERM handler; after Ray's start, whose own handler it replaces."""
    if not _main_thread():
        return

    def as_ctrl_c(signum, frame):
        _received.append(signum)
        signal.raise_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, as_ctrl_c)


def exit_code() -> int:
    """What a shell reports for the signal that stopped the sweep: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if signal.SIGTERM in _received else signal.SIGINT)


def fit(tuner):
    """tuner.fit(), then Ctrl-C back to Python's KeyboardInterrupt: Tune leaves its handler in
    place after a run, and it would take the next Ctrl-C (during the ensemble, say) for the
    finished run and ignore it."""
    try:
        return tuner.fit()
    finally:
        if _main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
