"""The runtime layer: building the Accelerator, refusing launch lines that silently misbehave, and
every workaround for a private Accelerate / transformers / DeepSpeed API, one function each.

Each workaround names the upstream behaviour it works around, and ``tests/test_runtime.py`` has a
test that fails if that behaviour (or the private name it relies on) changes upstream, so an
upgrade that breaks one is caught by the suite, not by a hung multi-GPU job.

Two CPU launch commands look right and silently do the wrong thing (measured on accelerate 1.x,
see docs/distributed.md): ``accelerate launch --cpu --num_processes 2`` starts ONE process, and
``--multi_gpu`` on a machine without CUDA (and without ``ACCELERATE_USE_CPU=true``) starts
independent processes that never communicate. Both are refused here with the working command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class LaunchError(RuntimeError):
    """The processes were launched in a way that would train wrongly; the message names the fix."""


FIX = ("on a machine without CUDA launch with: ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
       "--num_processes N --num_machines 1 -m rmlib train ...")


def _truthy(v: str | None) -> bool:
    return str(v).lower() in {"1", "true", "yes"}


def check_launch_environment(env: dict[str, str] | None = None) -> None:
    """Refuse the silent one-process multi-CPU launch before anything is built."""
    env = dict(os.environ if env is None else env)
    mpi = any(k in env for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"))
    if _truthy(env.get("ACCELERATE_USE_CPU")) and "MASTER_ADDR" in env and "WORLD_SIZE" not in env and not mpi:
        raise LaunchError("`accelerate launch --cpu --num_processes N` (N > 1) starts a single process "
                           "unless run under mpirun; " + FIX)
    check_fsdp(env)


FSDP_NEEDS_CUDA = ("FSDP was requested (ACCELERATE_USE_FSDP / distributed_type FSDP) but no CUDA device is "
                   "available. Accelerate's FSDP does not shard on CPU: FSDP1 finds no device and FSDP2 silently "
                   "trains unsharded, each process alone. Use a GPU machine, or on CPU use DDP "
                   "(configs/accelerate/cpu.yaml) or DeepSpeed ZeRO (configs/accelerate/deepspeed_zero*.yaml).")


def check_fsdp(env: dict[str, str] | None = None, distributed_type: str = "",
               cuda_available: bool | None = None) -> None:
    """Refuse FSDP without CUDA rather than let it run unsharded (docs/distributed.md, "FSDP on CPU")."""
    env = dict(os.environ if env is None else env)
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if not cuda and (_truthy(env.get("ACCELERATE_USE_FSDP")) or str(distributed_type).endswith("FSDP")):
        raise LaunchError(FSDP_NEEDS_CUDA)


def check_world(num_processes: int, distributed_type: str, env: dict[str, str] | None = None) -> None:
    """Refuse processes that were launched as a group but will not train as one.

    Either they did not join one process group, or they joined it while accelerate still says
    ``DistributedType.NO`` (``--multi_gpu`` on a CPU machine with gloo forced): then the model is
    never wrapped for gradient synchronisation and each rank trains alone on its own shard.
    """
    env = dict(os.environ if env is None else env)
    world = int(env.get("WORLD_SIZE", "1"))
    if world != num_processes or (num_processes > 1 and str(distributed_type).endswith("NO")):
        raise LaunchError(f"the launcher started {world} processes but each sees num_processes="
                           f"{num_processes}: they would train independently without communicating. "
                           + ("" if torch.cuda.is_available() else FIX))


def make_accelerator(*, mixed_precision: str = "no", gradient_accumulation_steps: int = 1,
                     log_with: str | None = None, project_dir: str | None = None):
    """An Accelerator for every backend; gloo is forced where there is no CUDA.

    Without an explicit backend, accelerate leaves DeepSpeed on CPU with ``backend=None`` and its
    first collective fails; DDP on CPU needs gloo too.
    """
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs, ProjectConfiguration

    check_launch_environment()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        reset_accelerate_state()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    handlers = [InitProcessGroupKwargs(backend="gloo")] if distributed and not torch.cuda.is_available() else []
    acc = Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=gradient_accumulation_steps,
                      kwargs_handlers=handlers, log_with=log_with,
                      project_config=ProjectConfiguration(project_dir=project_dir) if project_dir else None)
    check_fsdp(distributed_type=str(acc.distributed_type))
    check_world(acc.num_processes, str(acc.distributed_type))
    if mixed_precision == "fp16" and acc.device.type == "cpu":
        # accelerate accepts it and then neither autocasts nor scales on CPU: a silent fp32 run
        raise LaunchError("train.mixed_precision=fp16 has no effect on CPU (accelerate neither autocasts nor "
                           "scales there); use bf16, or no")
    return acc


# -- workarounds of private upstream APIs ---------------------------------------------------------


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide singletons so a second run in one process can configure anew.

    Upstream: ``AcceleratorState`` and ``GradientState`` are singletons; a second ``Accelerator``
    in the same Python process (a notebook, a test) silently keeps the first one's mixed precision
    and accumulation. Only safe with a single process (there is no process group to lose);
    accelerate's own tests call the same private ``_reset_state``.
    """
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def enable_checkpointing(hf: nn.Module) -> None:
    """Activation (gradient) checkpointing, non-reentrant, through whichever name this transformers has.

    Upstream: transformers 5 renamed ``gradient_checkpointing_enable`` to
    ``activation_checkpointing_enable`` (the old name warns and goes in v6); rmlib supports both
    majors. Checkpointing only acts on a module in train mode, which the trainer sets.
    """
    kwargs = {"use_reentrant": False}
    if hasattr(hf, "activation_checkpointing_enable"):
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def zero3_enabled() -> bool:
    """True inside a DeepSpeed ZeRO-3 run (accelerate registered its config with transformers)."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


@contextmanager
def without_zero3_init() -> Iterator[None]:
    """Load a model on this process alone while a ZeRO-3 run is live.

    Upstream: transformers partitions every ``from_pretrained`` at load (a collective) while
    accelerate's DeepSpeed config is registered in the private module global
    ``transformers.integrations.deepspeed._hf_deepspeed_config_weak_ref``, whatever accelerate's
    ``zero3_init_flag`` says; a reload on the main process only would then wait forever for the
    other ranks. Clearing that reference for the duration of the load turns it into a plain load.
    """
    import transformers.integrations.deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved
