"""Checkpoints that a crash cannot corrupt, and the bookkeeping to resume exactly.

Each checkpoint is written into ``<name>.tmp`` and renamed when complete: a kill mid-save leaves
the previous checkpoints untouched and an obviously incomplete ``.tmp`` directory that resume
ignores and the next save removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rmlib.io import remove_dir

STATE_FILE = "trainer_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from as asked (another run's, or past this run's end)."""


# Settings that change the optimisation: resuming a checkpoint under different values would continue
# another run's state as if it were this one's. (Logging, progress, eval cadence and the like may change.)
OPTIMISATION_KEYS = (
    "model.name_or_path", "model.attributes", "model.init_from_regression_attribute", "model.dtype", "model.lora",
    "data.train", "data.format", "data.data_dir", "data.hub_split", "data.train_split", "data.eval",
    "data.eval_split", "data.eval_fraction", "data.max_length", "data.keep_system", "data.group_by_length",
    "data.column_map", "data.seed", "data.mix", "data.annotations", "loss.name", "loss.options", "train.epochs", "train.max_steps",
    "train.per_device_batch_size", "train.gradient_accumulation_steps", "train.lr", "train.weight_decay",
    "train.adam_betas", "train.adam_eps", "train.scheduler", "train.warmup_ratio", "train.warmup_steps", "train.max_grad_norm",
    "train.mixed_precision", "train.seed",
)


def resume_differences(saved, current) -> list[str]:
    """``key: saved → current`` for every optimisation setting that differs between two configs."""
    out = []
    for key in OPTIMISATION_KEYS:
        section, name = key.split(".")
        a, b = getattr(getattr(saved, section), name), getattr(getattr(current, section), name)
        if a != b:
            out.append(f"{key}: {a!r} → {b!r}")
    return out


@dataclass
class TrainerState:
    """Where training stands; with the seed this fixes the exact sequence of remaining batches."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # global batches already consumed in ``epoch``
    best: list[tuple[float, str]] = field(default_factory=list)  # (eval loss, checkpoint name)
    history: list[dict] = field(default_factory=list)
    data_fingerprint: str = ""  # of the data the run trains on; a resume on other data is refused
    num_processes: int = 0  # world size that wrote the checkpoint (part of the batch geometry)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> TrainerState:
        d = json.loads(path.read_text())
        d["best"] = [tuple(b) for b in d.get("best", [])]
        return cls(**d)


def checkpoint_dir(root: Path) -> Path:
    return root / "checkpoints"


_NAME = re.compile(r"step-\d+")


def complete_checkpoints(root: Path) -> list[Path]:
    """Published checkpoints, oldest first: ``step-N`` directories with a state file.

    Anything else in the folder (``.tmp`` in progress, ``.old`` being replaced, ``.superseded``
    set aside by a resume) is never resumed from and never pruned.
    """
    d = checkpoint_dir(root)
    if not d.is_dir():
        return []
    done = [p for p in d.iterdir() if p.is_dir() and _NAME.fullmatch(p.name) and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: TrainerState.load(p / STATE_FILE).step)


def set_aside_newer(root: Path, step: int) -> list[Path]:
    """Rename this run's checkpoints newer than ``step`` to ``<name>.superseded``.

    Why: resuming from an older checkpoint starts a new branch of the run. The abandoned branch's
    later checkpoints would otherwise count as "newest" (``resume_from=auto`` would jump back to
    them) and push the new branch's checkpoints out of ``keep_best``. They are kept, not deleted.
    """
    moved = []
    for p in complete_checkpoints(root):
        if TrainerState.load(p / STATE_FILE).step > step:
            target = p.with_name(p.name + ".superseded")
            if target.exists():
                shutil.rmtree(target)
            os.replace(p, target)
            moved.append(target)
    return moved


def resolve_resume(resume_from: str | None, root: Path) -> Path | None:
    if not resume_from:
        return None
    if resume_from == "auto":
        done = complete_checkpoints(root)
        return done[-1] if done else None
    p = Path(resume_from)
    if p.name.endswith(".tmp") or not (p / STATE_FILE).is_file():
        raise FileNotFoundError(f"resume_from={resume_from}: not a complete rmlib checkpoint "
                                f"(a .tmp directory or no {STATE_FILE})")
    return p


def prune(root: Path, state: TrainerState, keep_best: int) -> None:
    """Keep the ``keep_best`` lowest-eval-loss checkpoints plus the newest one."""
    done = complete_checkpoints(root)
    if not done:
        return
    keep = {done[-1].name} | {name for _, name in sorted(state.best)[:keep_best]}
    for p in done:
        if p.name not in keep:
            remove_dir(p)
    for p in checkpoint_dir(root).glob("*.tmp"):
        shutil.rmtree(p, ignore_errors=True)
