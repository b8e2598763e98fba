"""How a sweep stops on a signal: SIGTERM as Ctrl-C.

`kill`, `timeout` and a batch scheduler's time limit send SIGTERM. Ray's driver answers it
with a stack dump and an abort, leaving no summary and no resume command; Ctrl-C (SIGINT)
instead makes Tune stop the trials, keep the finished ones and return, and the sweep then
says how to resume. So while a sweep runs (from Ray's start, whose handler ours replaces),
SIGTERM is turned into SIGINT.
"""
from __future__ import annotations

import signal
import threading

_received: list[int] = []  # the signals that stopped the latest sweep of this process
_replaced: list = []  # the SIGTERM handler ours replaced


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal.signal works only there


def _as_ctrl_c(signum, frame) -> None:
    _received.append(signum)
    if callable(signal.getsignal(signal.SIGINT)):
        signal.raise_signal(signal.SIGINT)
    else:  # SIGINT ignored (a background job of a script): what Ctrl-C would do, directly
        raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """SIGTERM stops the sweep as Ctrl-C does, until `restore_sigterm()`."""
    if not _main_thread():
        return
    _received.clear()
    _replaced[:] = [signal.signal(signal.SIGTERM, _as_ctrl_c)]


def restore_sigterm() -> None:
    """The handler found before the sweep again (Ray's own, which Python cannot reinstall,
    becomes the default: end the process)."""
    if _main_thread() and _replaced:
        found = _replaced.pop()
        signal.signal(signal.SIGTERM, found if found is not None else signal.SIG_DFL)


def exit_code() -> int:
    """What a shell reports for the signal that stopped the latest sweep: 143 for SIGTERM,
    130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if signal.SIGTERM in _received else signal.SIGINT)


def fit(tuner):
    """tuner.fit(), then the SIGINT handler found before it: Tune leaves its own in place
    after a run, which would take the next Ctrl-C (during the ensemble, say) for the finished
    run and ignore it. One found ignored comes back as Python's KeyboardInterrupt."""
    found = signal.getsignal(signal.SIGINT)
    try:
        return tuner.fit()
    finally:
        if _main_thread():
            signal.signal(signal.SIGINT, found if callable(found) else signal.default_int_handler)
