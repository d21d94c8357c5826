"""Training under ``accelerate launch`` (DDP, FSDP, DeepSpeed): which process this is, and the
one message the main process sends the others.

Under a launch every process runs the same command. The main process (accelerate's
``is_main_process``, global rank 0) alone reads and writes the event log and prepares the
training; it hands the others what they need (the pairs, the settings, the base model's folder,
the output folder) in one broadcast, then every process trains. Nothing here imports torch or
accelerate until a launch is detected, so a plain ``mrtui train`` never loads them here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# Set by every `accelerate launch` (single-process, multi-GPU, DeepSpeed alike).
ACCELERATE_MARKER = "ACCELERATE_MIXED_PRECISION"
# Set by torchrun, the deepspeed launcher and accelerate's multi-process launchers.
TORCHRUN_MARKER = "WORLD_SIZE"
# How long the other processes wait for the main one at a collective (the plan broadcast waits
# while the main process reads the log and materialises HF weights of a GGUF-only model, once).
TIMEOUT = timedelta(seconds=1800)


def launched(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process was started by ``accelerate launch`` or torchrun, whatever the
    number of processes; False for a plain command, which then runs as it always has."""
    env = os.environ if environ is None else environ
    return ACCELERATE_MARKER in env or TORCHRUN_MARKER in env


def world_size(environ: Mapping[str, str] | None = None) -> int:
    """Processes in the launch, from the launcher's environment (1 when not launched)."""
    env = os.environ if environ is None else environ
    try:
        return max(1, int(env.get(TORCHRUN_MARKER, "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class Ranks:
    """This process's place in a launch. ``broadcast`` sends the main process's object to every
    process (every process must call it, once per message, in the same order)."""

    rank: int
    num_processes: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        if self.num_processes == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        box = [obj if self.is_main else None]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def barrier(self) -> None:
        if self.num_processes > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()

    def close(self) -> None:
        """Leave the process group, once this process's last collective is done: a process
        that exits still joined can abort ("terminate called without an active exception")
        while the collective library's threads run."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def ranks() -> Ranks | None:
    """This process's ``Ranks`` under a launch (joining the process group on first use), or
    None when not launched."""
    if not launched():
        return None
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # as transformers' TrainingArguments would start it, with a longer wait for the main process
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=TIMEOUT)
    return Ranks(rank=int(state.process_index), num_processes=int(state.num_processes))
