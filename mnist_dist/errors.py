"""What a command's exit status means, and the errors a user can fix: one table, kept here.

docs/usage.md shows EXIT_CODES as a table; a test holds the two together."""
from __future__ import annotations

import errno

OK, FAILED, USAGE, INTERRUPTED, TERMINATED = 0, 1, 2, 130, 143

EXIT_CODES = {
    OK: "done: everything asked for was made",
    FAILED: "a runtime failure, or a partial result: some files, images or trials failed "
            "(each said so on its own line; the rest was done)",
    USAGE: "bad input or usage: a config value, flag, path, data, image or model file; "
           "nothing was started and nothing changed",
    INTERRUPTED: "stopped by Ctrl-C (SIGINT): finished work is kept, and the command says how to continue",
    TERMINATED: "stopped by SIGTERM (kill, timeout, a batch scheduler): as Ctrl-C",
}


class UserError(ValueError):
    """Something a user can fix; the message names it and says what is accepted (exit 2)."""


class ConfigError(UserError):
    """A config value, key, flag or path a user can fix."""


def os_error_line(e: OSError) -> tuple[str, int]:
    """One line for a failure of the disk or of a path, and its exit status: a full disk is a
    runtime failure (1); a path that cannot be written or read is bad input (2)."""
    where = f" {e.filename}" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full writing{where}", FAILED
    return f"{e.strerror or e}:{where}" if where else f"{e.strerror or e}", USAGE
