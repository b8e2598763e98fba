"""Processes of this machine, read from /proc: what a test needs to find and kill Ray's."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, session id) of a live process, None once it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # comm may hold spaces and parentheses
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[3]))


def session_pids(sid: int) -> list[int]:
    """Every live process of a session: a `ray start` run with start_new_session=True, its
    GCS, raylet and every worker the raylet spawned (they change process group, not session)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) and st[1] == sid:
            pids.append(int(entry))
    return pids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_session(sid: int, grace: float = 5.0) -> None:
    """SIGTERM the session, SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in session_pids(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while session_pids(sid) and time.time() < deadline:
            time.sleep(0.2)
        if not session_pids(sid):
            return


def listening(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.add(_hex_ip(addr))
    return found


def _hex_ip(h: str) -> str:
    if len(h) == 8:
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(h)[::-1])
    raw = b"".join(bytes.fromhex(h[i:i + 8])[::-1] for i in range(0, 32, 8))
    return socket.inet_ntop(socket.AF_INET6, raw)



def ray_started(folder: Path) -> bool:
    """A Ray kept a session folder under `folder` (its RAY_TMPDIR): a Ray was started."""
    return any(folder.rglob("session_*"))
