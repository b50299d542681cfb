"""The ``rollout`` command line: thin typer commands that delegate to the modules doing the work.

Heavy libraries (``kubernetes``, ``prometheus_api_client``) are imported inside the commands that
need them, so ``rollout --help`` and ``rollout lint`` start fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from rollout import __version__

app = typer.Typer(
    name="rollout",
    help="Progressive delivery for Kubernetes and Istio: canary, blue-green and mirror.",
    no_args_is_help=True,
    add_completion=True,
)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def lint(
    paths: list[Path] = typer.Argument(
        ..., help="Files or directories of YAML manifests; - reads standard input."
    ),
    allow_missing_templates: bool = typer.Option(
        False,
        "--allow-missing-templates",
        help="Do not require templateRef targets among the given files.",
    ),
) -> None:
    """Check Rollout and AnalysisTemplate manifests before they reach a cluster.

    Exit 0 when clean, 1 when problems were found, 2 when input could not be read.
    """
    from rollout.lint import run_lint

    raise typer.Exit(run_lint(paths, allow_missing_templates=allow_missing_templates))


@app.command()
def controller(
    kubeconfig: str | None = typer.Option(
        None, "--kubeconfig", help="Default: in-cluster, then KUBECONFIG, then ~/.kube/config."
    ),
    context: str | None = typer.Option(None, "--context", help="The kubeconfig context."),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="Watch one namespace (default: all)."
    ),
    workers: int = typer.Option(4, "--workers", min=1, help="Rollouts reconciled at once."),
    metrics_port: int = typer.Option(8080, "--metrics-port", help="0 disables /metrics."),
    health_port: int = typer.Option(8081, "--health-port", help="0 disables /healthz, /readyz."),
    bind_address: str = typer.Option(
        "127.0.0.1", "--bind-address", help="Address for metrics and health (0.0.0.0 in a pod)."
    ),
    leader_elect: bool = typer.Option(
        True, "--leader-elect/--no-leader-elect", help="Only the Lease holder reconciles."
    ),
    lease_namespace: str = typer.Option("default", "--lease-namespace"),
    prometheus_url: str | None = typer.Option(
        None, "--prometheus-url", help="Default Prometheus address for gates."
    ),
    log_format: str = typer.Option("text", "--log-format", help="text or json."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Run the controller until SIGTERM."""
    from rollout.controller.main import Options, run_controller

    if log_format not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    options = Options(
        kubeconfig=kubeconfig,
        context=context,
        namespace=namespace,
        workers=workers,
        metrics_port=metrics_port,
        health_port=health_port,
        bind_address=bind_address,
        leader_elect=leader_elect,
        lease_namespace=lease_namespace,
        prometheus_url=prometheus_url,
        log_format=log_format,
        log_level=log_level,
    )
    raise typer.Exit(run_controller(options))


sandbox_app = typer.Typer(
    help="A local cluster for trying the controller: a Kubernetes API emulator and workloads.",
    no_args_is_help=True,
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("up")
def sandbox_up(
    kubeconfig: Path = typer.Option(
        ..., "--kubeconfig", help="Where to write the kubeconfig, once the API answers."
    ),
    port: int = typer.Option(0, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    verbose: bool = typer.Option(False, "--verbose", help="Log every request."),
) -> None:
    """Run the sandbox cluster in the foreground until SIGTERM or Ctrl-C."""
    from rollout.sandbox.up import run_up

    raise typer.Exit(run_up(kubeconfig, port, verbose=verbose))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
