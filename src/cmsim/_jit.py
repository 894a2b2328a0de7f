"""Notice for the one-time numba compilation of a cold kernel cache.

The first run after an install (or with an empty ``NUMBA_CACHE_DIR``) compiles the numerical
kernels it calls, which takes seconds; later runs, in any process, load them from numba's
on-disk cache. :func:`compile_notice` prints one line when a compilation actually starts, so a
warm cache stays silent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TextIO

__all__ = ["COMPILE_NOTICE", "compile_notice"]

#: The line printed when the first kernel compilation of a run starts.
COMPILE_NOTICE = "compiling numerical kernels (first run only) ..."


@contextlib.contextmanager
def compile_notice(stream: TextIO, message: str = COMPILE_NOTICE) -> Iterator[None]:
    """Print ``message`` on ``stream`` once, when numba starts compiling inside the block.

    Parameters
    ----------
    stream : text stream
        Where the line goes (the CLI passes ``sys.stderr``).
    message : str
        The line (without newline).
    """
    from numba.core import event  # noqa: PLC0415

    class _Once(event.Listener):
        fired = False

        def on_start(self, ev: event.Event) -> None:
            if not self.fired:
                self.fired = True
                print(message, file=stream, flush=True)

        def on_end(self, ev: event.Event) -> None:
            pass

    with event.install_listener("numba:compile", _Once()):
        yield
