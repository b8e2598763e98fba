"""`mnist-dist dashboard [SWEEP_DIR]`: serve a sweep's Optuna study with optuna-dashboard.

A sweep keeps its Optuna study in SWEEP_DIR/optuna.db (SQLite), named after the folder;
this serves that file with optuna-dashboard's own web app (the `dashboard` extra:
pip install 'mnist-dist[dashboard]'), live while the sweep runs or after it. Without
SWEEP_DIR, the sweep under --results-dir whose optuna.db changed last. The server listens
on 127.0.0.1 unless --host says otherwise: the dashboard has no login, and it can edit and
delete studies."""
from __future__ import annotations

import errno
import ipaddress
import sys
from collections import Counter
from pathlib import Path

from ... import layout
from ...config import ConfigError

DB = layout.OPTUNA_DB
INSTALL = "pip install 'mnist-dist[dashboard]' (in a checkout: pip install -e '.[dashboard]')"


def port_number(s: str) -> int:
    import argparse

    try:
        port = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not in 0-65535")
    return port


def add_arguments(p) -> None:
    p.add_argument("sweep_dir", nargs="?", metavar="SWEEP_DIR",
                   help="sweep folder holding optuna.db (default: the newest sweep under --results-dir)")
    p.add_argument("--results-dir", default="results",
                   help="where to look for the newest sweep (default: results)")
    p.add_argument("--port", type=port_number, default=8080,
                   help="port to serve on (default: 8080; 0: any free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, "
                   "this machine only: the dashboard has no login)")
    p.add_argument("--log-requests", action="store_true", help="print one line per HTTP request")
    p.add_argument("--read-only", action="store_true",
                   help="refuse every change (optuna-dashboard can edit notes and delete trials and studies)")


def newest_sweep(results_dir: str | Path) -> Path:
    """The sweep folder under results_dir whose optuna.db was written last."""
    root = Path(results_dir)
    dbs = [db for db in root.glob(f"*/{DB}") if db.is_file()] if root.is_dir() else []
    if not dbs:
        raise ConfigError(f"no sweep under {root}/ (no {root}/*/{DB}): run `mnist-dist sweep ARCH` first, "
                          "or pass the sweep folder as SWEEP_DIR")
    return max(dbs, key=lambda db: db.stat().st_mtime).parent


def sweep_db(sweep_dir: str | Path) -> Path:
    path = Path(sweep_dir)
    if path.is_file() and path.name == DB:  # the database itself was given
        path = path.parent
    if not path.is_dir():
        raise ConfigError(f"{path} is not a folder (SWEEP_DIR: a sweep folder holding {DB})")
    if not (path / DB).is_file():
        raise ConfigError(f"{path} holds no {DB}, so it is not a sweep folder (a sweep run with --storage "
                          "keeps its study at that URL: run `optuna-dashboard URL` on it)")
    return (path / DB).resolve()


def open_storage(db: Path):
    """The RDB storage of `db`, opened as optuna-dashboard opens one (no schema check, no table
    creation), and checked to be an Optuna database."""
    import optuna

    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{db}", skip_compatibility_check=True,
                                             skip_table_creation=True)
        storage.get_all_studies()
    except Exception as e:  # sqlalchemy's errors: not a database, no Optuna tables
        raise ConfigError(f"{db} is not an Optuna study database ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''})") from None
    return storage


def require_dashboard():
    """optuna_dashboard, or the one line that says how to install it."""
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError(f"the dashboard needs optuna-dashboard, which is not installed: "
                          f"{INSTALL}") from None
    return optuna_dashboard


READS = ("GET", "HEAD", "OPTIONS")


def read_only(app):
    """The dashboard's WSGI app refusing every request that would change the study
    (optuna-dashboard itself has no read-only mode)."""
    def guarded(environ, start_response):
        if environ.get("REQUEST_METHOD", "GET") in READS:
            return app(environ, start_response)
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", ", ".join(READS))])
        return [b"this dashboard is read-only (mnist-dist dashboard --read-only)\n"]
    return guarded


def make_server(sweep_dir: str | Path, host: str = "127.0.0.1", port: int = 8080,
                log_requests: bool = False, readonly: bool = False):
    """A threaded wsgiref server of optuna-dashboard's app over the sweep's optuna.db, bound
    but not yet serving; returns (server, storage, study_id of the folder's study or None)."""
    optuna_dashboard = require_dashboard()
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server as wsgiref_server

    db = sweep_db(sweep_dir)
    storage = open_storage(db)
    try:
        study_id = storage.get_study_id_from_name(db.parent.name)  # runner.py names it after the folder
    except KeyError:
        study_id = None

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # Ctrl-C does not wait for a browser's open connections

    class Handler(WSGIRequestHandler):
        def log_message(self, format, *args):  # the page polls every few seconds
            if log_requests:
                super().log_message(format, *args)

    try:
        app = optuna_dashboard.wsgi(storage)
        server = wsgiref_server(host, port, read_only(app) if readonly else app, server_class=Server,
                                handler_class=Handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is in use: pass another --port "
                              "(0: any free one)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return server, storage, study_id


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(server, storage, study_id, db: Path) -> str:
    """Print what is served (the study and its trials, or why not just one study) and a
    warning when it is open to the network; returns the page's URL."""
    host, port = server.server_address[:2]
    base = f"http://{host}:{port}"
    if study_id is None:
        names = [s.study_name for s in storage.get_all_studies()]
        print(f"{db} holds no study named {db.parent.name!r} (it holds {names or 'none'}); "
              "serving them all")
        url = f"{base}/dashboard"
    else:
        trials = storage.get_all_trials(study_id, deepcopy=False)
        counts = Counter(t.state.name.lower() for t in trials)
        states = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        print(f"study {db.parent.name!r} from {db}: {len(trials)} trials"
              + (f" ({states})" if states else ""))
        url = f"{base}/dashboard/studies/{study_id}"
    if not is_loopback(host):
        print(f"warning: listening on {host}, not just this machine: anyone who reaches {base} "
              "can edit and delete the study (the dashboard has no login)", file=sys.stderr)
    return url


def run(args) -> int:
    require_dashboard()  # say what to install before looking for sweeps
    sweep_dir = Path(args.sweep_dir) if args.sweep_dir else newest_sweep(args.results_dir)
    server, storage, study_id = make_server(sweep_dir, args.host, args.port, args.log_requests, args.read_only)
    try:
        url = describe(server, storage, study_id, sweep_db(sweep_dir))
        changes = "read-only" if args.read_only else "it can edit and delete the study: --read-only refuses that"
        print(f"optuna-dashboard at {url} (Ctrl-C to stop; {changes})", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("dashboard stopped")
    finally:
        server.server_close()
    return 0
