"""The embedded Ray's security: token auth on, its dashboard on 127.0.0.1 only."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from .conftest import REPO
from .procs import kill_session, listening

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

EMBEDDED = """
import sys
from mnist_dist.tuning.execution.ray_setup import token_auth
token_auth()  # as the sweep command does before importing Ray
import ray
from mnist_dist.tuning.options import Scaling, SweepOptions
from mnist_dist.tuning.execution.ray_setup import init_ray
init_ray(SweepOptions(scaling=Scaling(workers=int(sys.argv[1]))))
from tests.ray_private import dashboard_url
print(dashboard_url(), flush=True)
sys.stdin.readline()
ray.shutdown()
"""


def http_status(url: str, token: str | None = None) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])  # 1: a bare dashboard process (no Ray Train to serve)
def test_embedded_ray_has_token_auth_and_a_localhost_only_dashboard(tmp_path, workers):
    """The sweep's own local Ray (no --address): Ray 2.60 turns token auth on and writes a
    token to ~/.ray/auth_token (a fresh HOME here); the dashboard listens on 127.0.0.1 only
    and answers its API only with that token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    env["HOME"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", EMBEDDED, str(workers)], cwd=REPO, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        url = proc.stdout.readline().strip()
        token = (tmp_path / ".ray" / "auth_token").read_text().strip()
        assert re.fullmatch(r"[0-9a-f]{64}", token)  # 256 random bits
        if workers == 1:  # no Ray Train, no State API to serve: no dashboard HTTP server at all
            assert url == ""
        else:
            host, port = url.rsplit(":", 1)
            assert host == "127.0.0.1", url
            assert listening(int(port)) == {"127.0.0.1"}  # not 0.0.0.0, not the host's address
            api = f"http://{url}/api/version"
            assert http_status(api) == 401  # no token
            assert http_status(api, "0" * 64) == 403  # a wrong one
            assert http_status(api, token) == 200
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=60)
    finally:
        kill_session(proc.pid)
