"""What every bad-input test checks: the exit code, one clear line naming the culprit, no
traceback, and nothing changed outside the output the command was allowed to write."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mnist_dist.cli import main


def tree_state(root: Path) -> dict[str, str]:
    """Every file and folder under root with its content hash (folders: 'dir'), so a test
    can say exactly what a command created, changed or removed."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            state[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = Path(dirpath, f)
            if p.is_symlink():
                state[os.path.relpath(p, root)] = "link:" + os.readlink(p)
                continue
            state[os.path.relpath(p, root)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return state


def run_bad(capsys, argv, *, code: int = 2, names: tuple[str, ...] = (), root: Path | None = None,
            may_write: tuple[str, ...] = ()) -> str:
    """Run `mnist-dist ARGV` in-process and check it failed as a user should see it: exit
    `code`, no traceback, an 'error:' line on stderr naming each of `names`, and (with `root`)
    nothing under root changed but paths starting with one of `may_write`. Returns stderr."""
    before = tree_state(root) if root is not None else None
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == code, f"exit {rc}, expected {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in out + err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors, f"no 'error:' line on stderr: {err!r}"
    for name in names:
        assert name in err, f"{name!r} not named in: {err!r}"
    if before is not None:
        after = tree_state(root)
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        changed = {k for k in changed if not k.startswith(may_write)} if may_write else changed
        assert not changed, f"changed under {root}: {sorted(changed)}"
    return err
