"""A command run in a real pseudo-terminal, and the screen a person would see (``pyte``).

``Terminal(argv)`` starts the command with its stdin, stdout and stderr on the slave side of
``os.openpty()`` (so ``isatty()`` is true and the window has a size), reads the master side on
a thread and feeds every byte to a VT100 screen emulator. ``wait_for`` polls the screen with a
deadline; ``screen()`` is its text, one line per row, as displayed (cursor moves, erases and
redraws applied). ``replay`` shows what given bytes draw on a screen of a given size. The only
module that imports ``pyte``.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Sequence

import pyte


def replay(raw: bytes, columns: int, lines: int) -> str:
    """What ``raw`` (bytes written to a terminal, newlines as the terminal driver sends them)
    shows on a fresh ``columns`` x ``lines`` screen: its rows, right-stripped, trailing empty
    rows dropped."""
    screen = pyte.Screen(columns, lines)
    pyte.ByteStream(screen).feed(raw)
    rows = [row.rstrip() for row in screen.display]
    while rows and not rows[-1]:
        rows.pop()
    return "\n".join(rows)


class Terminal:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        columns: int = 140,
        lines: int = 60,
        env: dict[str, str] | None = None,
    ) -> None:
        self._screen = pyte.Screen(columns, lines)
        self._stream = pyte.ByteStream(self._screen)
        self._lock = threading.Lock()
        self.raw = b""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        environment = {**os.environ, "TERM": "xterm", "LANG": "C.UTF-8", **(env or {})}
        environment.pop("COLUMNS", None)
        environment.pop("LINES", None)
        self.process = subprocess.Popen(
            list(argv),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=environment,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self._master = master
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the command exited and the slave side closed
                break
            if not chunk:
                break
            with self._lock:
                self.raw += chunk
                self._stream.feed(chunk)

    def screen(self) -> str:
        """The visible screen: its rows, right-stripped, trailing empty rows dropped."""
        with self._lock:
            rows = [row.rstrip() for row in self._screen.display]
        while rows and not rows[-1]:
            rows.pop()
        return "\n".join(rows)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """The screen once ``predicate(screen)`` holds; AssertionError with the screen (and how
        the command ended, if it did) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                code = self.process.poll()
                ended = "" if code is None else f" (the command exited with {code})"
                raise AssertionError(f"timed out waiting for {what}{ended}; screen:\n{text}")
            time.sleep(0.05)

    def interrupt(self, timeout: float = 10.0) -> int:
        """Ctrl-C (SIGINT to the command's process group); its exit status."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the command to exit and its output to be read; its exit status."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        os.close(self._master)
