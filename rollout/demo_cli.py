"""``rollout demo``'s command: check the options and the tools, run, write the outputs.

Ctrl-C or SIGTERM stop the run cleanly (the sandbox, the controller and Prometheus with it; on
an existing cluster the demo's namespace is deleted) and exit 130 or 143 without a traceback.
"""

from __future__ import annotations

import shutil
import signal
import sys
from pathlib import Path
from types import FrameType


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    # Only sets an Event: run_demo raises Stopped at its next wait, outside any lock, and its
    # cleanup (which stops Prometheus) runs.
    from rollout.demo import request_stop

    request_stop(128 + signum)


def output_problem(option: str, path: Path, suffix: str | None = None) -> str | None:
    """Why ``path`` (the value of ``option``) cannot take the demo's output, checked before a
    run of a minute rather than after it: a directory, a parent that is a file, a place the
    user cannot write, or (``suffix``, the plot's ``.png``) another format; None when it can.
    """
    import os

    if suffix is not None and path.suffix.lower() != suffix:
        return f"{option} {path}: the file name must end in {suffix}"
    if path.is_dir():
        return f"{option} {path}: is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{option} {path}: permission denied"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{option} {path}: {ancestor} is not a directory"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{option} {path}: permission denied in {ancestor}"
    return None


def run(
    scenario: str,
    json_file: Path | None,
    plot_file: Path | None,
    kubeconfig: Path | None = None,
    *,
    cluster_kubeconfig: Path | None = None,
    namespace: str | None = None,
) -> int:
    """``rollout demo``; its exit status: 0 when the scenario ends as expected, 1 when it does
    not or the tools or the cluster cannot be used (one line on stderr), 4 for bad options,
    128 + the signal when stopped."""
    from rollout.demo import SCENARIOS, Stopped, run_demo, write_json
    from rollout.sandbox.prometheus import INSTALL_HINT

    if scenario not in SCENARIOS:
        print(
            f"rollout demo: unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 4
    if cluster_kubeconfig is not None and kubeconfig is not None:
        print(
            "rollout demo: --kubeconfig writes the demo sandbox's kubeconfig; with "
            "--cluster-kubeconfig there is no sandbox (use that kubeconfig to watch the run)",
            file=sys.stderr,
        )
        return 4
    if namespace is not None and cluster_kubeconfig is None:
        print("rollout demo: --namespace needs --cluster-kubeconfig", file=sys.stderr)
        return 4
    for problem in (
        None if json_file is None else output_problem("--json", json_file),
        None if plot_file is None else output_problem("--plot", plot_file, ".png"),
    ):
        if problem is not None:
            print(f"rollout demo: {problem}", file=sys.stderr)
            return 4
    if shutil.which("prometheus") is None:
        print(f"rollout demo: {INSTALL_HINT} (or run scripts/install-prometheus)", file=sys.stderr)
        return 1
    if plot_file is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "rollout demo: --plot needs matplotlib: pip install 'rollout-controller[demo]'",
                file=sys.stderr,
            )
            return 1
    previous = {sig: signal.signal(sig, _stop_on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = run_demo(
            scenario,
            kubeconfig=kubeconfig,
            cluster_kubeconfig=cluster_kubeconfig,
            namespace=namespace,
        )
    except RuntimeError as error:
        print(f"rollout demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rollout demo: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    except Stopped as stopped:
        how = "interrupted" if stopped.code == 128 + signal.SIGINT else "terminated"
        print(f"rollout demo: {how}; everything it started is stopped", file=sys.stderr)
        return stopped.code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    try:
        if json_file is not None:
            write_json(result, json_file)
            print(f"timeline written to {json_file}")
        if plot_file is not None:
            from rollout.demo_plot import plot

            plot(result, plot_file)
            print(f"plot written to {plot_file}")
    except OSError as error:  # the path went away or filled up during the run
        print(
            f"rollout demo: cannot write {error.filename or ''}: {error.strerror}", file=sys.stderr
        )
        return 1
    return 0 if result.outcome == result.expected else 1
