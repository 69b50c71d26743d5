"""Data-parallel training: the batch shards' seeds, the process group of a torchrun launch (gloo on the CPU, nccl
on CUDA, one GPU per rank), and the launcher behind ``seqdiff train --nproc N``. How the W shards of a batch make
one loss ``L = (1/W) sum_r L_r``, in W processes or emulated in one: the ``train`` module docstring.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

import torch
import torch.distributed as dist

from ._validate import check_int


def shard_seed(seed: int, r: int) -> int:
    """The seed of shard ``r``'s generator: ``seed`` for shard 0 (the single-process stream), else 63 bits of
    ``sha256("seqdiff_kit shard r of seed s")`` (independent streams, the same on every machine)."""
    seed, r = check_int("seed", seed), check_int("r", r, 0)
    if r == 0:
        return seed
    digest = hashlib.sha256(f"seqdiff_kit shard {r} of seed {seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---------------------------------------------------------------------- the process group
@dataclass(frozen=True)
class Launch:
    """Where this process stands in a torchrun launch: ``rank`` of ``world`` processes, ``local_rank`` on this
    machine (``0, 1, 0`` outside torchrun)."""

    rank: int
    world: int
    local_rank: int


def launch_env() -> Launch:
    """This process's place in a torchrun launch, from the ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` that
    torchrun sets (``Launch(0, 1, 0)`` when they are absent)."""
    try:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets them), got "
                         f"{os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}, "
                         f"{os.environ.get('LOCAL_RANK')!r}") from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise ValueError(f"RANK must be in [0, WORLD_SIZE) and WORLD_SIZE >= 1, got RANK={rank}, WORLD_SIZE={world}")
    return Launch(rank, world, local)


def world() -> tuple[int, int]:
    """``(rank, size)`` of the initialized default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_process_group(device: torch.device, launch: Launch) -> torch.device:
    """Join the process group of a torchrun launch (its ``MASTER_ADDR``/``MASTER_PORT`` from the environment):
    gloo for the CPU, nccl for CUDA, where each rank takes the GPU of its local rank. Returns the rank's device."""
    if device.type == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {launch.local_rank} needs a GPU of its own, but {torch.cuda.device_count()} "
                             f"CUDA device(s) are visible; start at most that many processes per machine")
        device = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=_loopback_rank_store(launch),
                            rank=launch.rank, world_size=launch.world)
    return device


def _loopback_rank_store(launch: Launch):
    """The ranks' store of a launch on this machine (``MASTER_ADDR`` 127.0.0.1, as ``launch`` sets it), listening
    on 127.0.0.1 only: rank 0 hosts it on a socket it binds itself (torch's own store server would listen on
    every address). ``None`` for any other launch: torch's default (``env://``)."""
    from torch.distributed import TCPStore

    if os.environ.get("MASTER_ADDR") != "127.0.0.1" or "MASTER_PORT" not in os.environ:
        return None
    port = int(os.environ["MASTER_PORT"])
    if launch.rank != 0:
        return TCPStore("127.0.0.1", port, world_size=launch.world, is_master=False)
    fd, _ = _loopback_listener(port)
    return TCPStore("127.0.0.1", port, world_size=launch.world, is_master=True, master_listen_fd=fd)


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every rank of the process group got here; nothing without one. The ranks of a finished run
    leave together (see ``exit_rank``)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def exit_rank(code: int):
    """End a rank's process now with status ``code``, its output flushed, without the interpreter's teardown.
    Gloo's threads outlive ``destroy_process_group``, and destroying them at exit can abort the process
    (SIGABRT, "terminate called without an active exception") while another rank still runs, after a run that
    succeeded. A rank's files are written and closed before it gets here."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def all_mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over the ranks of ``values`` (the same tensor on every rank afterwards); ``values`` itself in
    a single process."""
    if world()[1] == 1:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world()[1]


def gather_objects(obj) -> list:
    """``obj`` of every rank, in rank order, on every rank (``[obj]`` in a single process)."""
    size = world()[1]
    if size == 1:
        return [obj]
    out = [None] * size
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------------- the launcher
class LaunchFailed(RuntimeError):
    """A launched run ended with a failed process: the first to fail, ``rank`` (of ``nproc``, with its ``pid``),
    killed by ``signal`` (a name such as ``"SIGKILL"``) or exited with status ``exitcode``."""

    def __init__(self, rank: int, nproc: int, pid: int, exitcode: int, signal: str | None):
        how = f"was killed by {signal}" if signal else f"exited with status {exitcode}"
        super().__init__(f"rank {rank} of {nproc} (pid {pid}) {how}")
        self.rank, self.nproc, self.pid, self.exitcode, self.signal = rank, nproc, pid, exitcode, signal


@contextmanager
def _quiet_elastic():
    """torchrun's agent logs every start and stop at WARNING; the CLI states the outcome itself."""
    names = ("torch.distributed.elastic", "torch.distributed.launcher")
    levels = {lg: lg.level for lg in map(logging.getLogger, names)}
    for lg in levels:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in levels.items():
            lg.setLevel(level)


@contextmanager
def _loopback_store():
    """The rendezvous store of a launch on this machine, listening on 127.0.0.1 only; yields its port. torch's
    TCPStore server listens on every address of the machine and takes no address to bind; it does take a socket
    already bound (``master_listen_fd``), and the rendezvous's own store (``multi_tenant``, same port) then
    shares this server instead of opening one."""
    from torch.distributed import TCPStore

    fd, port = _loopback_listener(0)
    store = TCPStore("127.0.0.1", port, is_master=True, multi_tenant=True, master_listen_fd=fd,
                     wait_for_workers=False)
    try:
        yield port
    finally:
        del store


def _loopback_listener(port: int) -> tuple[int, int]:
    """A TCP socket listening on 127.0.0.1:``port`` (0: a free one), as a file descriptor for a TCPStore, which
    owns (and closes) it from then on; returns ``(fd, port)``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
        port = sock.getsockname()[1]
    except BaseException:
        sock.close()
        raise
    return sock.detach(), port


# The ranks' environment (they inherit it, for the launch only): gloo's connections on the loopback interface (else
# it listens on the address the host name resolves to, which may face a network), and each launch's ranks host
# their own store (``_loopback_rank_store``) instead of the launcher's shared one, which listens on every address.
LOOPBACK_ENV = {"GLOO_SOCKET_IFNAME": "lo", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


def launch(nproc: int, argv: list[str], module: str = "seqdiff_kit.cli") -> None:
    """Run ``python -m module *argv`` in ``nproc`` processes on this machine, as ``torchrun --standalone
    --nproc-per-node nproc -m module *argv`` does (torch's elastic launcher, called in this process: no
    ``torchrun`` script needed on PATH; a local rendezvous on a free port; no restarts). The processes inherit
    this process's environment. Raises ``LaunchFailed`` naming the first failed rank when a process fails."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    nproc = check_int("nproc", nproc, 1)
    try:
        with _quiet_elastic(), _loopback_store() as port, mock.patch.dict(os.environ, LOOPBACK_ENV):
            config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc,
                                  run_id=f"seqdiff-{uuid.uuid4().hex}", rdzv_backend="c10d",
                                  rdzv_endpoint=f"127.0.0.1:{port}", rdzv_configs={"is_host": True},
                                  local_addr="127.0.0.1", max_restarts=0, monitor_interval=0.1)
            elastic_launch(config, sys.executable)("-u", "-m", module, *argv)
    except ChildFailedError as err:
        # the cause: a process killed from outside (the agent itself stops the others with SIGTERM), else the
        # first to fail (the agent's timestamps have a resolution of one second)
        killed = sorted(r for r, f in err.failures.items() if f.exitcode < 0 and f.signal_name() != "SIGTERM")
        rank, failure = (killed[0], err.failures[killed[0]]) if killed else err.get_first_failure()
        signal = failure.signal_name() if failure.exitcode < 0 else None
        raise LaunchFailed(rank, nproc, failure.pid, failure.exitcode, signal) from None
    except SignalException:  # Ctrl-C or a kill of this launcher: the agent has stopped the processes
        raise KeyboardInterrupt from None
