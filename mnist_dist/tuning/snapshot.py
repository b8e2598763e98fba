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

from ..config import ConfigError

SNAPSHOT_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


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
    state names its Optuna database) wins, and of several that name none, none is taken."""
    staged = [p for p in sorted(ray_sessions.glob(f"session_*/artifacts/*/{broken.parent.name}/driver_artifacts/"
                                                  f"{broken.name}")) if whole(p)]
    named = [p for p in staged if sweep in p.read_bytes()]
    if named:
        return named[0]
    return staged[0] if len(staged) == 1 else None


def repair(tune_dir: Path, ray_sessions: Path) -> list[str]:
    """Replace each truncated snapshot file in `tune_dir` with the whole one a Ray session under
    `ray_sessions` (Ray's temp folder) staged for this sweep. Returns the names replaced; raises
    ConfigError, saying what to do, when one has no whole copy left."""
    sweep = str(tune_dir.parent.resolve()).encode()
    replaced = []
    for pattern in SNAPSHOT_FILES:
        for broken in sorted(p for p in tune_dir.glob(pattern) if not whole(p)):
            good = staged_copy(broken, ray_sessions, sweep)
            if good is None:
                raise ConfigError(
                    f"--resume: {broken} is truncated (the driver was killed while Tune copied it) and "
                    f"no whole copy is left under {ray_sessions}. The finished trials' folders and "
                    f"histories are kept; start the sweep again under a new --name")
            tmp = broken.with_name(f".{broken.name}.repair")
            shutil.copyfile(good, tmp)
            tmp.replace(broken)
            replaced.append(broken.name)
    return replaced
