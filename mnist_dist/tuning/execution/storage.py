"""A sweep's Optuna storage: SQLite in the sweep folder, or the URL --storage names.

Every epoch of every trial is reported to it (TPE ranks stopped trials by those values),
so a write's cost is part of each epoch's overhead. SQLite's default rollback journal
creates and deletes a journal file for every write: 4-5 ms of a reused trial's ~20 ms
per-epoch overhead on the 2-core VM. In write-ahead-log (WAL) mode a write is an append
(and readers, such as the dashboard, no longer block the sweep). WAL holds recent writes
in a second file, optuna.db-wal, and needs write access to open; so when the sweep ends the
database goes back to a rollback journal, which folds the log into optuna.db: one
self-contained file again, readable from a read-only copy. A driver that is killed leaves
it in WAL mode, which SQLite recovers on the next open (--resume included). WAL needs the
readers and the writer on one host with working shared memory, which a network file
system (a cluster's EFS/NFS results folder) does not promise: there the study keeps
SQLite's default journal.
"""
from __future__ import annotations

import gc
import os
import re
import sqlite3
from pathlib import Path

from ... import layout

DEFAULT_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL")  # NORMAL: durable in WAL mode but for power loss
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "lustre", "9p")


def filesystem_type(path: Path, mounts: str | None = None) -> str:
    """The type of the file system holding `path` (Linux's /proc/mounts; '' where unknown)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    path, best, kind = os.path.realpath(path), "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def on_network_filesystem(path: Path) -> bool:
    kind = filesystem_type(path)
    return kind in NETWORK_FILESYSTEMS or kind.startswith("fuse")


ENV_STORAGE = "MNIST_DIST_STORAGE"  # the storage URL, for a password kept off the command line
MASK = "***"  # what a password becomes wherever a URL is written or printed
SECRET_PARAMS = ("password", "passwd", "pwd", "secret", "token")  # query parameters masked too


def mask_url(url: str | None) -> str | None:
    """`url` with its password (user:PASSWORD@host, ?password=...) replaced by ***: what
    config.json, config.yaml and the console show of a --storage URL."""
    if not url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    head, sep, query = rest.partition("?")
    if "@" in head and not head.startswith("/"):  # '/': an SQLite file's path, no user part
        # the last '@' ends the user part: an unescaped '@' or '/' may be in the password
        user_part, host = head.rsplit("@", 1)
        if ":" in user_part:
            head = f"{user_part.split(':', 1)[0]}:{MASK}@{host}"
    query = re.sub(rf"(?i)(^|&)((?:{'|'.join(SECRET_PARAMS)})=)[^&]*", rf"\1\2{MASK}", query)
    return f"{scheme}://{head}{sep}{query}"


def take_storage_url(given: str | None) -> str | None:
    """The storage URL a sweep uses: --storage as given, else $MNIST_DIST_STORAGE, which
    also stands in for a masked one (copied from config.json or a printed resume command).
    The variable is removed from this process's environment: every MNIST_DIST_* variable
    goes to Ray's workers and into the job config Ray stores, and only this driver talks to
    the storage."""
    from ...config import ConfigError

    env = os.environ.pop(ENV_STORAGE, None) or None
    if given and MASK in given:
        if env is None:
            raise ConfigError(f"--storage {given}: its password is masked ({MASK}); give the real URL, "
                              f"or set {ENV_STORAGE} to it")
        return env
    return given or env


def default_db(sweep_dir: Path) -> Path:
    return Path(sweep_dir) / layout.OPTUNA_DB


_real_urls: dict[str, str] = {}  # masked URL -> the real one, this driver's only


def url_masking_storage(url: str):
    """An RDBStorage whose pickled form (Tune pickles the searcher, and the searcher its
    storage, into tuner.pkl and searcher-state-*.pkl) holds the URL with its password masked.
    Unpickled by `--resume`, it takes the real URL from this driver's --storage or
    $MNIST_DIST_STORAGE, which open_storage has registered by then."""
    _real_urls[mask_url(url)] = url
    return _masking_class()(url)


_classes: list = []


def _masking_class():
    """The storage class, made on first use: it subclasses Optuna's, which this module must
    not import before a sweep needs it (the command line imports this module)."""
    if _classes:
        return _classes[0]
    import optuna

    class UrlMaskingStorage(optuna.storages.RDBStorage):
        def __getstate__(self):
            return {**super().__getstate__(), "url": mask_url(self.url)}

        def __setstate__(self, state):
            from ...config import ConfigError

            if MASK in state["url"]:
                if state["url"] not in _real_urls:
                    raise ConfigError(f"the sweep's Optuna storage {state['url']}: give its real URL with "
                                      f"--storage or {ENV_STORAGE}")
                state = {**state, "url": _real_urls[state["url"]]}
            super().__setstate__(state)

    UrlMaskingStorage.__qualname__ = "UrlMaskingStorage"  # found again through __getattr__ below
    _classes.append(UrlMaskingStorage)
    return UrlMaskingStorage


def __getattr__(name: str):
    if name == "UrlMaskingStorage":  # how pickle finds the class again
        return _masking_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_storage(url: str | None, sweep_dir: Path):
    """The RDBStorage the searcher writes to (OptunaSearch wants the object, not the URL)."""
    import optuna

    if url:  # the user's database, configured as they chose
        return url_masking_storage(url)
    storage = optuna.storages.RDBStorage(f"sqlite:///{default_db(sweep_dir)}")
    if on_network_filesystem(sweep_dir):
        return storage
    from sqlalchemy import event

    def on_connect(connection, _record):
        cursor = connection.cursor()
        for pragma in DEFAULT_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # the connection made while creating the tables predates the listener
    return storage


def write_ahead(sweep_dir: Path) -> str:
    """Before a --resume: the restored searcher unpickles its own storage, without
    open_storage's settings, and a sweep that ended cleanly was sealed. WAL mode is kept in
    the file itself, so set it there (the journal mode the file is then in)."""
    db = default_db(sweep_dir)
    if not db.is_file() or on_network_filesystem(sweep_dir):
        return ""
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.Error:  # in use elsewhere: the sweep runs with the journal it has
        return ""
    finally:
        conn.close()


def seal(sweep_dir: Path, storage=None) -> str:
    """After the sweep: fold the log into optuna.db and return to a rollback journal. Returns
    the journal mode the file is left in ('delete'; 'wal' if another connection still holds
    it open, which is harmless: SQLite reads it either way)."""
    db = default_db(sweep_dir)
    if not db.is_file():
        return ""
    if storage is not None:
        storage.engine.dispose()
    gc.collect()  # a restored searcher's storage (a --resume) is garbage by now: close its connections
    try:
        conn = sqlite3.connect(db, timeout=5)
    except sqlite3.Error:
        return "wal"
    try:
        return conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
    except sqlite3.Error:
        return "wal"
    finally:
        conn.close()
