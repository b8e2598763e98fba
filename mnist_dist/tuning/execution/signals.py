"""How a sweep stops on a signal: SIGTERM as Ctrl-C.

`kill`, `timeout` and a batch scheduler's time limit send SIGTERM. Ray's driver answers it
with a stack dump and an abort, leaving no summary and no resume command; Ctrl-C (SIGINT)
instead makes Tune stop the trials, keep the finished ones and return, and the sweep then
says how to resume. So while a sweep runs, SIGTERM is turned into SIGINT; while Ray starts
it waits until Ray has (Ray's own handlers, which it sets then, are kept aside meanwhile).

`timeout` and batch schedulers send SIGTERM to the whole process group; the embedded Ray's
processes are in groups of their own (internals.ray_processes_in_own_group), so only the driver gets
it and stops as on Ctrl-C. A scheduler that signals every process of a job (Slurm does)
still reaches Ray's processes too (they ignore only SIGINT): Tune's clean stop would then
wait on a dead raylet forever, or Ray's core end the driver with exit 1 and no word. A
watchdog, started by the signal, sees a Ray process end (the log monitor within 20 ms) and
ends the sweep with 143 and the resume command; it usually acts first. Trials checkpoint
every epoch and Tune snapshots the sweep as it goes, so `--resume` continues it.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

from .. import internals

_received: list[int] = []  # the signals that stopped the latest sweep of this process
_replaced: list = []  # the SIGTERM handler ours replaced
_resume: list[str] = []  # the command that resumes the running sweep (set by the CLI)
_fitting = threading.Event()  # Tune's run is in progress: a signalled Ray would hang it
_fit_lock = threading.Lock()  # held by the watchdog from its check to its exit
_holding: list[bool] = []  # Ray is starting: a SIGTERM waits until it has
RAY_CHECK_S = 0.05  # Ray's core may exit 1 as soon as it notices (see above)


def set_resume_command(command: str) -> None:
    _resume[:] = [command]


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()  # signal.signal works only there


def _as_ctrl_c(signum, frame) -> None:
    if _holding:  # Ray is starting: acted on once it has (held_while_ray_starts)
        _received.append(signum)
        return
    if not _received:
        threading.Thread(target=_watch_ray, name="ray-watchdog", daemon=True).start()
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


@contextlib.contextmanager
def held_while_ray_starts():
    """A SIGTERM while Ray starts (after `stop_on_sigterm()`) waits until it has started,
    then stops the sweep as Ctrl-C does: "interrupted before the first trial", 143.

    Ray's start sets SIGTERM handlers of its own (its node's drains the node and exits 1,
    its driver's raises SystemExit(15)). Raised in the middle of the start they ended the
    command with 15 and no word after 1.5-8.5 s, or were lost and the sweep ran on to
    the end as if nothing had come (1 of 3 signals). Here they are kept aside, not set:
    `restore_sigterm()` puts Ray's back after the sweep, as before."""
    if not _main_thread():  # no handler of ours, and Ray sets none off the main thread
        yield
        return
    _holding[:] = [True]
    try:
        with internals.ray_sigterm_handlers_diverted(lambda handler: _replaced.__setitem__(slice(None), [handler])):
            yield
    finally:
        _holding.clear()
        # Ray's core, connecting, put a C++ handler of its own in front of ours (it prints a
        # stack dump first): ours alone again, as Python still believes it is
        signal.signal(signal.SIGTERM, _as_ctrl_c)
    if _received:
        raise KeyboardInterrupt


def restore_sigterm() -> None:
    """The handler found before the sweep again (Ray's own, which Python cannot reinstall,
    becomes the default: end the process)."""
    if _main_thread() and _replaced:
        found = _replaced.pop()
        signal.signal(signal.SIGTERM, found if found is not None else signal.SIG_DFL)


def _ray_processes_ended() -> bool:
    """A Ray process this process started (GCS, raylet, log monitor, dashboard...) has exited:
    none does while Ray runs, so the signal reached them too. A Ray it joined (`--address`)
    has none here, and a signal to this process alone leaves them running."""
    return any(process.poll() is not None for process in internals.ray_processes())


def _watch_ray() -> None:
    while True:
        time.sleep(RAY_CHECK_S)
        with _fit_lock:  # fit() cannot return meanwhile and go on writing results we would cut
            if not (_fitting.is_set() and _ray_processes_ended()):
                continue
            hint = f" Resume with:\n  {_resume[0]}" if _resume else ""
            print("\nstopped: the signal reached Ray's own processes too (sent to the whole process group, as "
                  "`timeout` and batch schedulers do), so Tune could not stop the trials cleanly. Finished "
                  f"trials and every trial's last epoch are saved.{hint}", file=sys.stderr, flush=True)
            os._exit(128 + signal.SIGTERM)


def signalled() -> bool:
    """A signal reached the latest sweep of this process (its results may be partial)."""
    return bool(_received)


def exit_code() -> int:
    """What a shell reports for the signal that stopped the latest sweep: 143 for SIGTERM,
    130 for Ctrl-C."""
    return 128 + (signal.SIGTERM if signal.SIGTERM in _received else signal.SIGINT)


def fit(tuner):
    """tuner.fit(), then the SIGINT handler found before it: Tune leaves its own in place
    after a run, which would take the next Ctrl-C (during the ensemble, say) for the finished
    run and ignore it. One found ignored comes back as Python's KeyboardInterrupt."""
    found = signal.getsignal(signal.SIGINT)
    _fitting.set()
    try:
        return tuner.fit()
    finally:
        with _fit_lock:
            _fitting.clear()
        if _main_thread():
            signal.signal(signal.SIGINT, found if callable(found) else signal.default_int_handler)
