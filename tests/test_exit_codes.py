"""The exit codes: one table in the code (errors.EXIT_CODES) and the same in docs/usage.md;
how `mnist-dist` turns a user's error, a disk's failure and Ctrl-C into a line and a code."""
from __future__ import annotations

import errno
import re

import pytest

from mnist_dist import errors
from mnist_dist.cli import run_command
from mnist_dist.models.registry import UnknownModelError

from .conftest import REPO


def test_the_docs_table_is_the_codes_table():
    text = (REPO / "docs" / "usage.md").read_text()
    section = text[text.index("## Exit codes"):]
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, flags=re.M))
    assert {int(k): v for k, v in rows.items()} == errors.EXIT_CODES


def raising(exc):
    def fn(args):
        raise exc
    return fn


@pytest.mark.parametrize("exc, code, line", [
    (errors.ConfigError("x.yaml: lr: -1 is not valid"), 2, "error: x.yaml: lr: -1 is not valid"),
    (UnknownModelError("unknown architecture 'resnet'"), 2, "error: unknown architecture 'resnet'"),
    (OSError(errno.ENOSPC, "No space left on device", "out/model.onnx"), 1, "error: disk full writing out/model.onnx"),
    (OSError(errno.EDQUOT, "Disk quota exceeded", "a.csv"), 1, "error: disk full writing a.csv"),
    (PermissionError(errno.EACCES, "Permission denied", "/srv/x"), 2, "error: Permission denied: /srv/x"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "results"), 2, "error: Is a directory: results"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_errors_become_one_line_and_their_code(exc, code, line, capsys):
    assert run_command(raising(exc), None) == code
    out, err = capsys.readouterr()
    assert err.strip() == line and not out


def test_every_user_error_is_a_usage_error():
    from mnist_dist.data.idx import DataError
    from mnist_dist.models.checkpoint import CheckpointError

    for cls in (errors.ConfigError, DataError, CheckpointError):
        assert issubclass(cls, errors.UserError)


def test_a_closed_pipe_is_not_an_error_line(capsys):
    """`mnist-dist models | head`: entry() ends quietly with 141, as a shell reports SIGPIPE."""
    with pytest.raises(BrokenPipeError):
        run_command(raising(BrokenPipeError(32, "Broken pipe")), None)
    assert capsys.readouterr().err == ""
