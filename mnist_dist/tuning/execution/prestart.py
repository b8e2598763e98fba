"""What every Python worker of a sweep's embedded Ray imports as it starts (ray_setup.PRELOAD),
before it takes a trial: torch, torch._dynamo (which torch.optim's constructor imports, 1.1-1.7 s)
and the trial's own module. The worker says it has started and then that it is ready, by files
named after its pid in $MNIST_DIST_READY_DIR (PID.start, then PID), so the driver can start the search when its first trials' processes are:
a trial then costs only its own work, and the processes' start-up is counted as the sweep's.
"""
import os

_folder = os.environ.get("MNIST_DIST_READY_DIR")
if _folder:  # started: a worker that dies before it is ready is then not waited for
    try:
        open(os.path.join(_folder, f"{os.getpid()}.start"), "x").close()
    except OSError:  # the sweep ended meanwhile and removed the folder
        pass

try:
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401

    from ..trials import reused  # noqa: F401
finally:  # even after a failed import: the trial reports that error; the driver must not wait on it
    if _folder:
        try:
            open(os.path.join(_folder, str(os.getpid())), "x").close()
        except OSError:  # the sweep ended meanwhile and removed the folder
            pass
