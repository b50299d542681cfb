"""CLI conventions that need no cluster: ``--help`` in an 80-column terminal (a real
pseudo-terminal), exit 4 for bad input, a missing kubeconfig named by its path."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from rollout.cli import app

ROLLOUT = str(Path(sys.executable).parent / "rollout")
COLUMNS = 80
PYTHON_TYPE = re.compile(r"<(?:str|int|float|bool|path|Path|list\[[^\]]*\]|\w+ range)>")


def help_in_a_terminal(*command: str, columns: int = COLUMNS) -> str:
    """``rollout COMMAND --help`` run in a pseudo-terminal ``columns`` wide, as a person sees it
    (no COLUMNS variable: the width comes from the terminal, as in a shell)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen(
        [ROLLOUT, *command, "--help"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=30) == 0
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of ``rollout`` (click objects), with its path of names."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(path: tuple[str, ...], command: Any) -> None:
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


def squeezed(text: str) -> str:
    """``text`` without whitespace: wrapped and unwrapped help compare equal."""
    return "".join(text.split())


@pytest.mark.parametrize("path", [p for p, _ in commands()], ids=lambda p: " ".join(p) or "-")
def test_help_fits_80_columns_in_full_without_bool_types(path: tuple[str, ...]) -> None:
    command = dict(commands())[path]
    shown = help_in_a_terminal(*path)
    too_wide = [line for line in shown.splitlines() if len(line) > COLUMNS]
    assert not too_wide, shown
    assert "…" not in shown and "<bool>" not in shown, shown
    # no Python type names either (``--port <int>``, ``NAME <str>``, ``paths... <list[Path]>``)
    # and no braces around required arguments (``{NAME}``): kubectl's plain ``NAME``
    assert not PYTHON_TYPE.search(shown), shown
    assert "{" not in shown.splitlines()[0], shown
    whole = squeezed(shown)
    for param in command.params:
        text = getattr(param, "help", None)
        if text:
            assert squeezed(text) in whole, f"{param.name}: {text!r} cut in:\n{shown}"
        if getattr(param, "is_flag", False) and not getattr(param, "secondary_opts", None):
            # a plain flag: its name, then its help; no type, no value
            assert f"{param.opts[-1]}<" not in whole, shown
    for name, sub in getattr(command, "commands", {}).items():
        summary = (sub.help or "").split("\n\n")[0]
        assert squeezed(f"{name}{summary}") in whole, f"{name}: summary cut in:\n{shown}"


def test_the_exit_statuses_are_in_the_help() -> None:
    shown = squeezed(help_in_a_terminal())
    for status in ("0success", "3theKubernetesAPI", "4badinput"):
        assert status in shown


def run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    environment = {"KUBERNETES_SERVICE_HOST": None, **(env or {})}
    result = CliRunner().invoke(app, list(args), env=environment)
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["list", "-o", "table"],
        ["get", "reviews", "-o", "xml"],
        ["status", "reviews", "--timeout", "soon"],
        ["status"],
        ["set", "image", "reviews", "app"],
        ["set", "image", "reviews", "*=x:2", "app=x:3"],
        ["set", "image", "reviews", "app= x:2"],
        ["get", ""],  # would GET the collection: a traceback
        ["promote", "reviews/status"],  # would PATCH another resource's path
        ["undo", "Reviews"],
        ["list", "-n", "../kube-system"],
        ["set", "image", "reviews", "app=x:2\n"],
        ["no-such-command"],
        ["lint", "--kubernetes-version", "1.2", "crds/examples"],
    ],
)
def test_bad_input_exits_4_with_one_error(args: list[str]) -> None:
    code, stderr = run(*args, "--kubeconfig", "/nonexistent")
    assert code == 4, stderr
    assert "Error:" in stderr and "Traceback" not in stderr


def test_list_output_names_the_formats() -> None:
    code, stderr = run("list", "-o", "table")
    assert code == 4
    assert "--output" in stderr and "json, yaml, wide" in stderr


def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, stderr = run("list", "--kubeconfig", str(missing))
    assert (code, stderr) == (4, f"error: kubeconfig {missing} (from --kubeconfig): no such file\n")
    code, stderr = run("status", "reviews", env={"KUBECONFIG": str(missing)})
    assert (code, stderr) == (4, f"error: kubeconfig {missing} (from KUBECONFIG): no such file\n")
    code, stderr = run("get", "reviews", env={"KUBECONFIG": f"{missing}:{missing}2"})
    assert code == 4 and f"{missing}, {missing}2" in stderr
    code, stderr = run("promote", "reviews", env={"KUBECONFIG": None, "HOME": str(tmp_path)})
    assert code == 4
    assert stderr == f"error: no kubeconfig: {tmp_path}/.kube/config does not exist (set " + (
        "--kubeconfig or KUBECONFIG)\n"
    )


def test_an_unusable_kubeconfig_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("this: [is not a kubeconfig")
    code, stderr = run("list", "--kubeconfig", str(broken))
    assert code == 4 and stderr.startswith(f"error: bad kubeconfig {broken}: ")
    assert len(stderr.splitlines()) == 1


def test_an_api_server_that_never_answers_is_unreachable_not_a_hang(tmp_path: Path) -> None:
    """A server that accepts connections and never answers (a hung apiserver, a black-holing
    load balancer) is exit 3 after the CLI's request timeout, not four timeouts of urllib3's
    own retries per request (two minutes and more for `rollout list`)."""
    import socket

    from rollout.cluster.kube import CLI_REQUEST_TIMEOUT

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # never accepted: the kernel completes the handshakes, nobody answers
    port = server.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            [ROLLOUT, "list", "--kubeconfig", str(kubeconfig)],
            capture_output=True,
            text=True,
            timeout=CLI_REQUEST_TIMEOUT * 3,
            env={k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"},
        )
    finally:
        server.close()
    assert time.monotonic() - started < CLI_REQUEST_TIMEOUT * 2
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("error: cannot reach the Kubernetes API: ")
    assert "timed out" in result.stderr and len(result.stderr.splitlines()) == 1
