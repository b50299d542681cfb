"""``rollout sandbox up``: run the sandbox cluster in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from rollout.sandbox.cluster import Sandbox


def run_up(kubeconfig: Path, port: int, *, crds: Path | None = None, verbose: bool = False) -> int:
    try:
        sandbox = Sandbox(port, crds=crds, quiet=not verbose)
    except OSError as error:
        print(
            f"rollout sandbox: cannot listen on 127.0.0.1:{port}: {error.strerror}", file=sys.stderr
        )
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sandbox.start()
    sandbox.write_kubeconfig(kubeconfig)
    print(f"sandbox API at {sandbox.url}", flush=True)
    print(f"kubeconfig written to {kubeconfig} (export KUBECONFIG={kubeconfig})", flush=True)
    stop.wait()
    sandbox.stop()
    print("sandbox stopped", flush=True)
    return 0
