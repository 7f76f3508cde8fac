"""Each workaround in rmlib.runtime has a test here that fails when the upstream behaviour it works
around changes: then the workaround is either obsolete or broken, and must be revisited."""

from __future__ import annotations

import inspect

import pytest

from rmlib import runtime


def test_accelerate_state_is_a_singleton_that_reset_clears():
    """Upstream: a second Accelerator in one process keeps the first one's accumulation setting."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    assert callable(getattr(AcceleratorState, "_reset_state", None))
    assert callable(getattr(GradientState, "_reset_state", None))
    runtime.reset_accelerate_state()
    Accelerator(cpu=True, gradient_accumulation_steps=2)
    assert GradientState().num_steps == 2
    Accelerator(cpu=True, gradient_accumulation_steps=5)  # upstream: the singleton keeps 2 ...
    stale = GradientState().num_steps
    runtime.reset_accelerate_state()
    Accelerator(cpu=True, gradient_accumulation_steps=5)  # ... until it is reset
    assert GradientState().num_steps == 5
    assert stale in (2, 5)  # if upstream starts honouring the new value, reset is merely harmless
    runtime.reset_accelerate_state()


def test_enable_checkpointing_uses_a_name_this_transformers_has(tiny_llama):
    from transformers import AutoModelForSequenceClassification, PreTrainedModel

    assert hasattr(PreTrainedModel, "activation_checkpointing_enable") or hasattr(
        PreTrainedModel, "gradient_checkpointing_enable")
    m = AutoModelForSequenceClassification.from_pretrained(tiny_llama)
    runtime.enable_checkpointing(m)
    assert getattr(m, "is_activation_checkpointing", None) or m.is_gradient_checkpointing


def test_zero3_init_reference_is_the_private_global_we_clear():
    """Upstream: transformers keeps accelerate's DeepSpeed config in this module global and
    partitions every from_pretrained while it is set."""
    import transformers.integrations.deepspeed as hf_ds

    assert hasattr(hf_ds, "_hf_deepspeed_config_weak_ref")
    assert "_hf_deepspeed_config_weak_ref" in inspect.getsource(hf_ds.is_deepspeed_zero3_enabled)
    sentinel = object()
    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = sentinel
    try:
        with runtime.without_zero3_init():
            assert hf_ds._hf_deepspeed_config_weak_ref is None
        assert hf_ds._hf_deepspeed_config_weak_ref is sentinel
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved
    assert runtime.zero3_enabled() is False


def test_accelerate_still_swaps_the_offload_optimizer_unless_told_not_to():
    """Upstream: with ZeRO optimizer offload, accelerate's prepare() replaces a torch optimizer by a
    new DeepSpeedCPUAdam unless ``zero_force_ds_cpu_optimizer`` is false (rmlib sets it false in
    training/backends.configure_deepspeed, since the copy loses the LR schedule on resume)."""
    import accelerate.accelerator as acc_mod
    from accelerate.utils.deepspeed import map_pytorch_optim_to_deepspeed

    src = inspect.getsource(acc_mod)
    assert "zero_force_ds_cpu_optimizer" in src and "map_pytorch_optim_to_deepspeed" in src
    assert callable(map_pytorch_optim_to_deepspeed)


@pytest.mark.parametrize("env", [{"ACCELERATE_USE_CPU": "true", "MASTER_ADDR": "x"}])
def test_launch_checks_live_in_the_runtime_layer(env):
    with pytest.raises(RuntimeError, match="single process"):
        runtime.check_launch_environment(env)
