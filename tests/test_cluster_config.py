"""cluster.yaml as Ray's own launcher validates it, and no secrets in the repository."""
from __future__ import annotations

import re

import yaml

from .conftest import REPO


def test_cluster_yaml_passes_rays_own_validation():
    """`ray up` runs prepare_config (merge with the AWS defaults) then validate_config (Ray's
    JSON schema and its cross-field checks) before it touches AWS; so do we, offline."""
    from .ray_private import validate_cluster_config

    raw = yaml.safe_load((REPO / "cluster.yaml").read_text())
    config = validate_cluster_config(raw)
    assert config["provider"]["type"] == "aws"
    head, workers = config["head_node_type"], config["available_node_types"]
    assert workers[head]["resources"] == {"CPU": 0}  # the head trains nothing
    gpu = workers["gpu_worker"]
    assert gpu["node_config"]["InstanceType"] == "g5.xlarge"
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= config["max_workers"]
    # The project on every node, with Ray, Python and the dependencies at constraints.txt's versions.
    pins = re.findall(r"^ray==([\d.]+)$", (REPO / "constraints.txt").read_text(), flags=re.M)
    assert config["docker"]["image"] == f"rayproject/ray:{pins[0]}-py311-gpu"
    assert any("pip install" in c and "/home/ray/mnist-dist" in c and "constraints.txt" in c
               for c in config["setup_commands"])
    assert config["file_mounts"]["/home/ray/mnist-dist"] == "."
    assert any("MNIST_DIST_DATA_DIR=/home/ray/data" in c for c in config["setup_commands"])
    # Shared storage for results and checkpoints, mounted before the containers start.
    assert any("/mnt/efs" in c for c in config["initialization_commands"])
    assert "-v /mnt/efs:/mnt/efs" in config["docker"]["run_options"]
    # Token auth on every node; the dashboard is not opened to the network.
    for cmd in config["head_start_ray_commands"][1:] + config["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token" in cmd and "dashboard-host" not in cmd
    ssh = config["provider"]["security_group"]["IpPermissions"]
    assert [p["FromPort"] for p in ssh] == [22] and ssh[0]["IpRanges"][0]["CidrIp"] != "0.0.0.0/0"


def test_no_secrets_in_cluster_config_or_notes():
    docs = sorted((REPO / "docs").glob("*.md"))  # the README's cluster and security notes live here
    for path in (REPO / "cluster.yaml", REPO / "README.md", REPO / "notes" / "cluster.md", *docs):
        if not path.exists():
            continue
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY", text), path
        assert not re.search(r"\b[0-9a-f]{64}\b", text), f"{path}: looks like a Ray auth token"
