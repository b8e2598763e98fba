"""Tune's snapshot of a sweep, made whole before `--resume` reads it.

Tune writes its snapshot (`experiment_state-*.json`, `search_gen_state-*.json`,
`searcher-state-*.pkl`, one set per driver) in a staging folder of the Ray session and
copies it into the sweep's `tune/` folder after every checkpoint. The copy is not atomic: a
driver killed during it leaves a truncated file there (seen: a 0-byte `search_gen_state`,
and `--resume` then failed on EOFError). The killed driver's staging folder, in its Ray
session's folder on the same machine, still holds the whole file.
"""
from __future__ import annotations

import json
import pickletools
import shutil
from pathlib import Path

from ...config import ConfigError
from .. import internals


def whole(path: Path) -> bool:
    """The file parses to its end: JSON, or (Tune's .pkl and its pickled search_gen_state .json)
    a complete pickle, read opcode by opcode without building any object."""
    try:
        data = path.read_bytes()
        if not data:
            return False
        if data[:1] in (b"{", b"["):
            json.loads(data)
        else:
            for _ in pickletools.genops(data):
                pass
    except (OSError, ValueError):  # json.JSONDecodeError and pickletools' errors are ValueErrors
        return False
    return True


def staged_copy(broken: Path, ray_sessions: Path, sweep: bytes) -> Path | None:
    """The whole copy of `broken` a Ray session staged. Its name holds the second the sweep
    started and every sweep's Tune folder is named alike, so two sweeps started in the same
    second could stage the same name: one that names this sweep's folder (the searcher's
    state names its Optuna database) wins; copies that name none are taken only if they are
    all the same file (a resumed sweep's session stages the older snapshots again)."""
    found = internals.staged_snapshots(ray_sessions, broken.parent.name, broken.name)
    # session_latest is a link to one of the sessions: each file once
    staged = sorted({p.resolve() for p in found if whole(p)})
    named = [p for p in staged if sweep + b"/" in p.read_bytes()]
    if named:
        return named[0]
    return staged[0] if staged and len({p.read_bytes() for p in staged}) == 1 else None


def repair(tune_dir: Path, ray_sessions: Path | None) -> list[str]:
    """Replace each truncated snapshot file Tune will read in `tune_dir` with the whole one a Ray session under
    `ray_sessions` (Ray's temp folder) staged for this sweep. Returns the names replaced; raises
    ConfigError, saying what to do, when one has no whole copy left."""
    sweep = str(tune_dir.parent.resolve()).encode()
    replaced = []
    for pattern in internals.SNAPSHOT_FILES:
        # Tune reads only the newest of each (the greatest name, its driver's start time)
        broken = max(tune_dir.glob(pattern), default=None)
        if broken is not None and not whole(broken):
            good = staged_copy(broken, ray_sessions, sweep) if ray_sessions and internals.on("tune-snapshot") else None
            if good is None:
                raise ConfigError(
                    f"--resume: {broken} is truncated (the driver was killed while Tune copied it) and "
                    f"no whole copy is left{f' under {ray_sessions}' if ray_sessions else ''}. The finished trials' folders and "
                    f"histories are kept; start the sweep again under a new --name")
            tmp = broken.with_name(f".{broken.name}.repair")
            shutil.copyfile(good, tmp)
            tmp.replace(broken)
            replaced.append(broken.name)
    return replaced
