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


def main() -> None:
    app()
