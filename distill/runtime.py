"""Where training runs: device, mixed precision, determinism, data loading, processes.

:class:`Runtime` is chosen per invocation (``--device``, ``--amp``, ``--loader``,
``--workers``, ``--micro-batches``, ``--deterministic``) and never changes what a run
*is* (it is kept out of the config tags that name run folders), only where and how fast
it runs.

Devices
-------
``--device auto`` takes ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda:1`` picks a
GPU. Under torchrun each process takes ``cuda:<LOCAL_RANK>``.

Mixed precision (``--amp``)
---------------------------
``auto``: bf16 autocast on CUDA devices that support it, else fp16 with a gradient
scaler; off on CPU. ``bf16`` / ``fp16`` / ``off`` force it. Losses, metrics and
checkpoints stay float32.

Determinism (``--deterministic``, default on)
---------------------------------------------
Seeds, ``torch.use_deterministic_algorithms(True, warn_only=True)``, one intra-op thread
per process on CPU (exactly reproducible, tested). On CUDA also cuDNN deterministic,
benchmark off, ``CUBLAS_WORKSPACE_CONFIG=:4096:8``; kernels without a deterministic
version warn instead of failing (warn_only), and bf16/fp16 autocast rounds differently
from float32. Documented tolerance on GPU: a rerun on the same GPU, driver and torch
should match to float32 round-off; different GPUs or AMP against float32 give
differences of the order of a few 1e-3 in validation macro-F1 per epoch, not bit equality.
Not measured here (no GPU was lent to this task).

Processes (torchrun)
--------------------
``torchrun --nproc-per-node N -m distill train ...`` sets ``RANK``/``WORLD_SIZE``;
:func:`init_distributed` joins the group (``gloo`` on CPU, ``nccl`` on CUDA). Each global
batch of ``B`` windows is split into ``N`` slices (a ``DistributedSampler`` over the
pass's planned windows), the model is wrapped in ``DistributedDataParallel`` and
gradients are averaged. A single process with ``--micro-batches N`` computes exactly the
same step (slice ``k`` of every batch as micro-batch ``k``, dropout seeded per slice),
which is how the DDP tests compare them. BatchNorm uses per-slice statistics in both
(``SyncBatchNorm`` needs GPUs). Only rank 0 writes checkpoints, logs and results.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from typing import Any

import torch

from sleepstream.errors import UsageError

AMP_MODES = ("auto", "off", "bf16", "fp16")
LOADERS = ("memory", "dataloader")


@dataclass(frozen=True)
class Runtime:
    """How a run executes (not what it computes).

    Attributes
    ----------
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:<i>``.
    amp : {"auto", "off", "bf16", "fp16"}
    loader : {"memory", "dataloader"}
        ``memory``: windows cut in the training process with one random stream per pass
        (the original path); ``dataloader``: a ``torch.utils.data.DataLoader`` over
        (night, window) items with ``workers`` processes, one random stream per item (the
        path that shards across processes).
    workers : int
        DataLoader worker processes (0 = in the training process).
    micro_batches : int
        Split every batch into this many slices, one forward/backward each (gradient
        accumulation; the single-process twin of DDP over this many processes).
    deterministic : bool
    """

    device: str = "cpu"
    amp: str = "auto"
    loader: str = "memory"
    workers: int = 0
    micro_batches: int = 1
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise UsageError(f"--amp {self.amp!r}: valid: {', '.join(AMP_MODES)}")
        if self.loader not in LOADERS:
            raise UsageError(f"--loader {self.loader!r}: valid: {', '.join(LOADERS)}")
        if self.workers < 0 or self.micro_batches < 1:
            raise UsageError(
                f"--workers {self.workers} / --micro-batches {self.micro_batches}: "
                "need workers >= 0 and micro-batches >= 1"
            )
        resolve_device(self.device)  # a bad name fails before any training

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for float32."""
        dev = self.torch_device
        if self.amp == "off" or (self.amp == "auto" and dev.type != "cuda"):
            return None
        if self.amp == "bf16":
            return torch.bfloat16
        if self.amp == "fp16":
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def autocast(self):
        """Context manager for the forward pass and the loss."""
        dtype = self.amp_dtype()
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.torch_device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 (None for float32 and bf16)."""
        if self.amp_dtype() is torch.float16:
            return torch.amp.GradScaler(self.torch_device.type)
        return None

    @property
    def per_item(self) -> bool:
        """Whether windows come from the per-item (DataLoader) path."""
        return self.loader == "dataloader" or world_size() > 1

    def describe(self) -> dict[str, Any]:
        """What a sidecar records about the run's execution."""
        dev = self.torch_device
        dtype = self.amp_dtype()
        return {
            "device": str(dev),
            "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
            "amp": None if dtype is None else str(dtype).replace("torch.", ""),
            "loader": "dataloader" if self.per_item else "memory",
            "workers": self.workers,
            "micro_batches": self.micro_batches,
            "world_size": world_size(),
            "deterministic": self.deterministic,
            "torch": torch.__version__,
        }


def resolve_device(spec: str) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:<i>`` -> a torch device (the local rank's GPU
    under torchrun); :class:`UsageError` when CUDA is asked for and absent."""
    spec = (spec or "cpu").strip()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {spec}: torch sees no CUDA device (torch {torch.__version__})"
            )
        if spec == "cuda":
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        try:
            idx = int(spec.split(":", 1)[1])
        except ValueError:
            raise UsageError(f"--device {spec!r}: expected cuda:<index>") from None
        if not 0 <= idx < torch.cuda.device_count():
            raise UsageError(f"--device {spec}: {torch.cuda.device_count()} CUDA device(s) here")
        return torch.device("cuda", idx)
    raise UsageError(f"--device {spec!r}: valid: auto, cpu, cuda, cuda:<index>")


def set_determinism(seed: int, threads: int = 1, deterministic: bool = True) -> None:
    """Seed torch, force deterministic kernels where possible and use ``threads`` threads."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def cpu_name() -> str:
    """The CPU model name (``/proc/cpuinfo``) or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------- processes
def world_size() -> int:
    """Processes in the group (1 without torchrun)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Rank 0 (the only writer of checkpoints, logs and results)."""
    return rank() == 0


def init_distributed(device: torch.device) -> bool:
    """Join the torchrun group when ``WORLD_SIZE > 1`` (idempotent); True when distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(
            backend, store=_attempt_store(), rank=rank(), world_size=world_size()
        )
    return True


def _attempt_store():
    """The rendezvous store, under a prefix per torchrun attempt.

    After a worker dies, torchrun restarts the group; with the store's keys shared across
    attempts, a restarted rank can read a dead peer's old address and fail or hang
    (seen here with gloo, about one restart in two). A prefix per
    ``TORCHELASTIC_RESTART_COUNT`` keeps every attempt's keys apart.
    """
    from datetime import timedelta

    dist = torch.distributed
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(host, port, world_size(), is_master=not agent and rank() == 0,
                          timeout=timedelta(minutes=10))  # fmt: skip
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"distill/attempt{attempt}/", store)


def barrier() -> None:
    if world_size() > 1 and torch.distributed.is_initialized():
        torch.distributed.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (identity without a group)."""
    if world_size() <= 1 or not torch.distributed.is_initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
