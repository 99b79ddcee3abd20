"""Console output of the command line: printing that survives a closed pipe, one-line errors."""

from __future__ import annotations

import os
import sys

# Exit statuses of every audify command (the README's "Exit status" section lists them).
EXIT_ERROR = 1  # the command could not run: bad arguments, unreadable input, OUT not writable
EXIT_USAGE = 2  # argparse: unknown option or missing argument
EXIT_SOME_FAILED = 3  # audify label: the run completed, some recordings failed (see the summary)
EXIT_INTERRUPTED = 130  # Ctrl-C: what was complete is committed


def print_lines(*lines: str) -> None:
    """Print to stdout; a reader that went away (``| head``) is not an error and changes no status."""
    try:
        for line in lines:
            print(line, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def os_error_line(error: OSError) -> str:
    """One line for an OS error: what went wrong and with which file, no traceback."""
    where = f": {error.filename}" if error.filename else ""
    reason = error.strerror or str(error) or type(error).__name__
    return f"{reason}{where}"


def first_line(error: BaseException) -> str:
    """The first line of an error's message (DuckDB adds the query and a caret below it)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
