"""Preemption: SIGTERM (and a first Ctrl-C) end a run with a checkpoint instead of losing its work.

Schedulers preempt with SIGTERM and a grace period (SLURM sends it ``--signal``/``KillWait`` seconds
before SIGKILL, 30 s by default; Kubernetes ``terminationGracePeriodSeconds``, 30 s by default). A
handler that only *records* the signal lets the step in flight finish; the trainer then saves through
its one atomic checkpoint path and raises :class:`Preempted`, which ``rmlib train`` turns into exit
status :data:`EXIT_PREEMPTED`. ``train.resume_from=auto`` continues from that checkpoint exactly as
from any other.

The ranks must agree on *when* to stop, or one would wait forever in a collective the other never
enters. A signal may reach one rank only (``kill`` of one PID, a launcher that forwards late), so the
flag travels in the per-step statistics all-reduce the trainer already does: every rank sees the same
sum after the same step, at no extra communication.

Ctrl-C sends SIGINT to the whole foreground process group; the first one is treated as SIGTERM, a
second one restores the default handler's behaviour (``KeyboardInterrupt`` at once, no save), for a
user who does not want to wait.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path

EXIT_PREEMPTED = 75
"""``rmlib train``'s exit status after a signal-triggered save: ``EX_TEMPFAIL`` of sysexits.h, "a
temporary failure; the user is invited to retry". Distinct from 0 (done), 1 (a crash), 2 (an rmlib
error) and 128 + N (killed by signal N), so a job script can requeue on it (``[ $? -eq 75 ]``)."""


class Preempted(Exception):  # noqa: N818 - reads as what happened, like KeyboardInterrupt
    """The run stopped on a signal after saving ``checkpoint``; ``signum`` is 0 on a rank that did not
    receive the signal itself but stopped with the rank that did."""

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        what = signal.Signals(signum).name if signum else "a signal another rank received"
        super().__init__(f"stopped by {what} after step {step}; checkpoint {checkpoint}; "
                         "continue with train.resume_from=auto")


class SignalFlag:
    """Records SIGTERM/SIGINT while installed; ``signum`` is the first signal seen (0: none)."""

    def __init__(self) -> None:
        self.signum = 0
        self._interrupts = 0

    def _handle(self, signum: int, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:  # pressed twice: the user wants out now
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
        self.signum = self.signum or signum

    @property
    def raised(self) -> float:
        """1.0 once a signal arrived: summed over ranks by the step's all-reduce."""
        return 1.0 if self.signum else 0.0


@contextmanager
def catching_signals(enabled: bool = True):
    """Install :class:`SignalFlag`'s handler for SIGTERM and SIGINT, restoring the old ones after.

    Handlers can only be set from the main thread; elsewhere (a notebook's worker thread, a server)
    nothing is installed and signals keep their usual effect.
    """
    flag = SignalFlag()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.signal(s, flag._handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
