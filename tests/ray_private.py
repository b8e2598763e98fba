"""The private parts of Ray that tests use and the package does not, each named here once
(the package's own are in mnist_dist/tuning/internals.py). Checked on the releases that
module names."""
from __future__ import annotations


def tune_actor_class(cls):
    """`cls` made into an actor class exactly as Tune makes a trial's (its class cache, with
    the runtime_env Tune adds)."""
    from ray.tune.execution.class_cache import _ActorClassCache

    return _ActorClassCache().get(cls)


def validate_cluster_config(raw: dict) -> dict:
    """What `ray up` checks before it touches a cloud: the defaults merged in, then Ray's
    JSON schema and cross-field checks. Returns the merged config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(raw)
    validate_config(config)
    return config


def actor_alive(actor_id, timeout: float = 30):
    """What Ray Train's placement-group cleaner asks the State API about its controller."""
    from ray.train.v2._internal.state.util import is_actor_alive

    return is_actor_alive(actor_id, timeout=timeout)


def dashboard_url() -> str:
    """The URL of the dashboard of the Ray this process started or joined."""
    import ray._private.worker

    return ray._private.worker._global_node.webui_url


def set_sigterm_handler(handler) -> None:
    """What ray.init calls to install its SIGTERM handler."""
    from ray._private import utils

    utils.set_sigterm_handler(handler)
