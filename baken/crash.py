"""What a crash says: the exception's type and where it happened (file, line and function of each
frame, and of each exception it came from), never its message. A message can quote a value: a
BSN read from a source record in an adapter, a pseudonym or a case reference in a service, the
parameters of a failed SQL statement. A crash report is read by more people than the data's
covenant names."""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path


def report(error: BaseException) -> str:
    """The type and frames of `error` and of the exceptions it came from; no messages."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        where = "\n".join(f"  {Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames)
        parts.append(f"{type(current).__name__} (message withheld)\n{where}".rstrip())
        current = current.__cause__ or current.__context__
    return "\nwhich came from ".join(parts)


def install() -> None:
    """Report crashes of this process's threads as `report` does, instead of Python's default
    (which prints each exception's message)."""

    def thread_crashed(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread else "?"
        print(f"thread {name} crashed: {report(args.exc_value)}", file=sys.stderr, flush=True)

    threading.excepthook = thread_crashed
