"""One run per output folder: checked usable before the first step, locked while a run writes to it, and never
started fresh over another run's checkpoints by accident (transformers' scripts ask for --overwrite_output_dir too)."""

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from .checkpointing import PREFIX, complete_checkpoints

LOCK_FILE = ".run.lock"


def is_main_process() -> bool:
    """Rank 0 of an `accelerate launch` (or a plain single process): the one that owns the folder."""
    return int(os.environ.get("RANK", "0")) == 0


def check_writable(output_dir: Path) -> None:
    """A folder we can write into, made if missing; ValueError naming --output_dir otherwise."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {str(output_dir)!r} is a file, not a folder.")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise ValueError(f"--output_dir {str(output_dir)!r} cannot be written: {error.strerror or error}.") from None


def lock(output_dir: Path):
    """An exclusive lock on the folder for this process's lifetime (released by the kernel if it dies); ValueError
    naming the other run's pid when one holds it. Returns the open lock file: keep a reference to it."""
    handle = open(output_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "unknown"
        handle.close()
        raise ValueError(f"--output_dir {str(output_dir)!r} is in use by another run (pid {other}); wait for it, or "
                         "choose another folder.") from None  # fmt: skip
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def claim_output_dir(args):
    """Before any work: the folder is writable and not in use, and a fresh run (no --resume_from_checkpoint) does
    not start over another run's checkpoints unless --overwrite_output_dir, which then removes them, so that a later
    `--resume_from_checkpoint latest` cannot pick them up. Returns the lock (None on other processes)."""
    if not is_main_process():
        return None
    output_dir = Path(args.output_dir)
    check_writable(output_dir)
    held = lock(output_dir)
    earlier = complete_checkpoints(output_dir)
    if earlier and getattr(args, "resume_from_checkpoint", None) is None:
        if not getattr(args, "overwrite_output_dir", False):
            held.close()
            raise ValueError(f"--output_dir {str(output_dir)!r} holds another run's checkpoints "
                             f"({', '.join(p.name for _, p in earlier)}): resume it with --resume_from_checkpoint "
                             "latest, or start over with --overwrite_output_dir.")  # fmt: skip
        for _, path in earlier:
            shutil.rmtree(path)
        for partial in output_dir.glob(f".tmp-{PREFIX}*"):
            shutil.rmtree(partial)
    return held
