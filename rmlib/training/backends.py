"""What the trainer must tell DeepSpeed, because it drives accumulation and batching itself.

The trainer never hands Accelerate a DataLoader (it builds global batches and splits them into
micro-batches per process), so Accelerate cannot infer DeepSpeed's batch sizes. And several
DeepSpeed settings duplicate rmlib options; when a config file pins one of them to a different
value, Accelerate quietly lets DeepSpeed win, which would desynchronise the trainer's manual
accumulation from the engine's. :func:`configure_deepspeed` fills every ``"auto"`` value from the
rmlib config and refuses a conflicting explicit value instead.

Loss scaling under accumulation stays right: the trainer's micro-batch loss is
``sum × world × accum / global_count``; DeepSpeed's ``engine.backward`` divides by its
``gradient_accumulation_steps`` (set equal to ``train.gradient_accumulation_steps`` here), exactly
like Accelerate's ``backward`` does for DDP, and both average gradients over processes.
"""

from __future__ import annotations

from typing import Any

import torch

from rmlib.config import ConfigError, TrainConfig


def _plugin(acc: Any):
    return getattr(acc.state, "deepspeed_plugin", None)


def configure_deepspeed(acc: Any, t: TrainConfig) -> None:
    """Fill the DeepSpeed config from ``train.*`` before ``accelerator.prepare`` (no-op without DeepSpeed).

    * ``train_micro_batch_size_per_gpu`` = ``train.per_device_batch_size`` (items per micro-batch;
      DeepSpeed uses it only for bookkeeping and its throughput log, never to slice data);
    * ``gradient_accumulation_steps`` = ``train.gradient_accumulation_steps``: the engine scales
      the loss by 1/GAS and steps on Accelerate's ``sync_gradients`` boundary;
    * ``gradient_clipping`` = ``train.max_grad_norm`` (DeepSpeed clips inside ``engine.step``;
      ``accelerator.clip_grad_norm_`` only reports the norm under DeepSpeed);
    * ZeRO-3: ``stage3_gather_16bit_weights_on_model_save`` = true, since the final save writes a
      full Hugging Face model gathered from the shards.
    * optimizer offload: ``zero_force_ds_cpu_optimizer`` = false, so that DeepSpeed steps the
      ``DeepSpeedCPUAdam`` the trainer built (and its LR scheduler drives) instead of a copy that
      Accelerate would make (see the comment in the code).
    """
    plugin = _plugin(acc)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    wanted = {"train_micro_batch_size_per_gpu": t.per_device_batch_size,
              "gradient_accumulation_steps": t.gradient_accumulation_steps,
              "gradient_clipping": float(t.max_grad_norm)}
    for key, value in wanted.items():
        current = ds.get(key, "auto")
        if current == "auto":
            ds[key] = value
        elif float(current) != float(value):
            raise ConfigError(f"the DeepSpeed config sets {key}={current} but rmlib's train config implies {value}; "
                              f"set it to \"auto\" in the DeepSpeed config (rmlib fills it) or make them agree")
    ds["train_batch_size"] = t.per_device_batch_size * t.gradient_accumulation_steps * acc.num_processes
    if offloads_optimizer(acc):
        # The trainer already builds DeepSpeedCPUAdam (build_adamw). With this flag true (DeepSpeed's
        # default) Accelerate's prepare() swaps in a *new* DeepSpeedCPUAdam (map_pytorch_optim_to_deepspeed),
        # built with adamw_mode=False (Adam + L2 instead of AdamW, since ours is not a torch AdamW) and
        # sharing our optimizer's param-group dicts only until DeepSpeed's load_checkpoint replaces
        # them: after a resume the LR scheduler (bound to our optimizer) no longer reaches the optimizer
        # that steps, and the LR freezes at its checkpoint value. False only skips that swap and
        # DeepSpeed's "offload needs a DeepSpeed CPU optimizer" check, which ours passes anyway.
        if ds.get("zero_force_ds_cpu_optimizer") is True:
            raise ConfigError("the DeepSpeed config sets zero_force_ds_cpu_optimizer=true with optimizer offload; "
                              "rmlib already builds DeepSpeedCPUAdam, and the copy this flag makes loses the LR "
                              "schedule on resume: remove the key or set it to false")
        ds["zero_force_ds_cpu_optimizer"] = False
    # Accelerate read gradient_accumulation_steps from the plugin when the Accelerator was built
    acc.gradient_accumulation_steps = t.gradient_accumulation_steps
    zero = ds.setdefault("zero_optimization", {})
    if int(zero.get("stage", 0)) == 3:
        if zero.get("stage3_gather_16bit_weights_on_model_save", "auto") is False:
            raise ConfigError("ZeRO-3 with stage3_gather_16bit_weights_on_model_save=false cannot write the final "
                              "Hugging Face model; set it to true (or \"auto\")")
        zero["stage3_gather_16bit_weights_on_model_save"] = True


def offloads_optimizer(acc: Any) -> bool:
    """True when DeepSpeed keeps optimizer states on the CPU (ZeRO-Offload)."""
    plugin = _plugin(acc)
    if plugin is None:
        return False
    off = plugin.deepspeed_config.get("zero_optimization", {}).get("offload_optimizer") or {}
    return off.get("device", "none") in ("cpu", "nvme")


def build_adamw(acc: Any, groups: list[dict], **kwargs: Any) -> torch.optim.Optimizer:
    """The trainer's AdamW for this backend.

    * ZeRO-Offload: DeepSpeed's vectorised ``DeepSpeedCPUAdam`` in AdamW mode, the same update.
      DeepSpeed refuses a plain torch optimizer there (it would be slow on a GPU machine). Its
      kernel is JIT-compiled on first use (about 70 s on 2 cores) and cached in
      ``~/.cache/torch_extensions``.
    * Wherever torch owns the parameters (one process, DDP): fused ``torch.optim.AdamW``, one
      kernel per step instead of foreach's parameter-sized temporaries: faster, and a lower peak
      (TRL's default too).
    * DeepSpeed without offload, FSDP: plain ``torch.optim.AdamW``; they manage the parameters.
    """
    if offloads_optimizer(acc):
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, **kwargs)
    if acc.distributed_type.name in ("NO", "MULTI_CPU", "MULTI_GPU"):
        kwargs["fused"] = True
    return torch.optim.AdamW(groups, **kwargs)
