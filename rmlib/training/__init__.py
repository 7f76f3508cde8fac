"""The Accelerate trainer."""

from rmlib.training.preemption import EXIT_PREEMPTED, Preempted
from rmlib.training.trainer import Trainer, train

__all__ = ["EXIT_PREEMPTED", "Preempted", "Trainer", "train"]
