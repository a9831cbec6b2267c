"""A job subprocess ends when the worker that started it dies (``kill -9`` included).

The worker keeps the child's stdin open for the child's whole life; :func:`exit_when_stdin_closes`
waits on a daemon thread for end-of-file, which the kernel delivers when the worker's end closes,
for whatever reason, and then ends the process at once. Without it an orphaned solve or training run
would keep burning a core after its job was handed to another worker.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Final, TextIO

#: Exit status of a child whose worker went away.
EXIT_ORPHANED: Final = 70


def exit_when_stdin_closes(stream: TextIO | None = None) -> threading.Thread:
    """Start the watcher; call it after the request (if any) has been read from stdin."""
    source = sys.stdin if stream is None else stream

    def watch() -> None:
        while source.readline():
            pass  # the worker sends nothing more; anything it sends is ignored
        os._exit(EXIT_ORPHANED)

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread
