"""Multi-process training: Detectron2's ``launch`` on GPUs, and the same on CPUs with the gloo backend.

Detectron2 v0.6's ``launch`` starts one process per GPU with the NCCL backend and asserts that
CUDA is available. :func:`launch` hands GPU runs to it unchanged; on CPUs it starts the processes
itself (``torch.multiprocessing.spawn``), joins them with ``backend="gloo"``, sets up Detectron2's
local process group as upstream does, and wraps the model in ``DistributedDataParallel`` without
``device_ids`` (Detectron2's ``create_ddp_model`` passes the local rank, which DDP refuses for a CPU
model). Gradients are then averaged over all processes exactly as on GPUs; every process reads
its own share of each batch (``SOLVER.IMS_PER_BATCH`` is the total), and only rank 0 writes
checkpoints, metrics and results.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

import torch

from detectron2.utils import comm

DEFAULT_TIMEOUT = timedelta(minutes=30)


def launch(main_func: Callable[..., Any], num_processes: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: Optional[str] = None, args: Sequence[Any] = (), cpu: bool = False,
           timeout: timedelta = DEFAULT_TIMEOUT) -> Any:
    """Run ``main_func(*args)`` in ``num_processes`` processes on each of ``num_machines`` machines
    (this one is ``machine_rank``), joined at ``dist_url`` (e.g. ``tcp://HOST:PORT``; "auto": a free
    port here, one machine only). ``cpu``: CPU processes with the gloo backend; else Detectron2's own
    launch (one process per GPU, NCCL). One process in all: ``main_func`` runs here and its result
    is returned; otherwise None."""
    world_size = num_machines * num_processes
    if not cpu or world_size == 1:
        from detectron2.engine import launch as detectron2_launch

        return detectron2_launch(main_func, num_processes, num_machines=num_machines, machine_rank=machine_rank,
                                 dist_url=dist_url, args=tuple(args), timeout=timeout)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url 'auto' picks a port on this machine: give tcp://HOST:PORT for several machines")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    torch.multiprocessing.spawn(_cpu_worker, nprocs=num_processes, daemon=False,
                                args=(main_func, world_size, num_processes, machine_rank, dist_url, tuple(args), timeout))
    return None


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _cpu_worker(local_rank: int, main_func: Callable[..., Any], world_size: int, num_processes: int,
                machine_rank: int, dist_url: str, args: Sequence[Any], timeout: timedelta) -> None:
    """One CPU process of :func:`launch`: join the gloo group, then ``main_func(*args)``."""
    import torch.distributed as dist

    global_rank = machine_rank * num_processes + local_rank
    try:
        dist.init_process_group(backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank,
                                timeout=timeout)
    except Exception:
        logging.getLogger(__name__).error("process group URL: %s", dist_url)
        raise
    # Detectron2's local process group: the ranks on this machine (comm.get_local_rank/size)
    for machine in range(world_size // num_processes):
        group = dist.new_group(list(range(machine * num_processes, (machine + 1) * num_processes)))
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    _ddp_without_device_ids()
    comm.synchronize()
    main_func(*args)


def _ddp_without_device_ids() -> None:
    """In this CPU worker only: Detectron2's trainer wraps its model by ``create_ddp_model``, which
    gives DDP the local rank as ``device_ids``; a CPU model needs none."""
    from detectron2.engine import defaults

    create_ddp_model = defaults.create_ddp_model

    def create_cpu_ddp_model(model, **kwargs):
        kwargs.setdefault("device_ids", None)
        return create_ddp_model(model, **kwargs)

    defaults.create_ddp_model = create_cpu_ddp_model
