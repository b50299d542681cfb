"""The ``rollout`` command line: thin typer commands that delegate to the modules doing the work.

Heavy libraries (``kubernetes``, ``prometheus_api_client``) are imported inside the commands that
need them, so ``rollout --help`` and ``rollout lint`` start fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from rollout import __version__

if TYPE_CHECKING:
    from rollout.ops import Target

# Exit statuses shared by every command (docs/cli.md has the same table).
EXIT_OK = 0
EXIT_FAILED = 1  # Degraded, a failed gate, lint problems, a request the API refused
EXIT_UNDECIDED = 2  # status --timeout, analyze Inconclusive, lint input that cannot be read
EXIT_UNREACHABLE = 3  # the Kubernetes API (or, for analyze, Prometheus) could not be reached
EXIT_BAD_INPUT = 4  # bad options or arguments, a kubeconfig that cannot be used, bad manifests
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_STATUS_HELP = (
    "Exit status: 0 success; 1 failed (Degraded, a failed gate, lint problems, a request the "
    "API refused); 2 undecided (status --timeout, analyze Inconclusive, lint input that cannot "
    "be read); 3 the Kubernetes API (analyze: Prometheus) cannot be reached; 4 bad input "
    "(options, arguments, kubeconfig, manifests); 130 interrupted."
)

# click's UsageError (typer vendors its own click in newer versions): BadParameter's base.
_USAGE_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


def _as_bad_input(error: Exception) -> None:
    """A usage error (missing or malformed options and arguments) exits 4, not click's 2: 2
    means a timeout for ``status`` and Inconclusive for ``analyze``."""
    if isinstance(error, _USAGE_ERROR) and getattr(error, "exit_code", None) == 2:
        setattr(error, "exit_code", EXIT_BAD_INPUT)  # noqa: B010 - not a declared attr


class _PlainArgument(TyperArgument):
    """An argument shown as kubectl shows one: ``NAME`` in the usage line and the help, not
    ``{NAME}`` and ``NAME <str>`` (typer's Python type names: ``paths... <list[Path]>``)."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        if not self.required:
            name = f"[{name}]"
        if self.nargs != 1 and not name.endswith("..."):
            name += "..."
        return name


def _plain_params(command: Any) -> None:
    """Show ``command``'s parameters without Python types: an option that takes a value and
    has no metavar gets a word for its type as plain click prints it (``--port INTEGER``,
    ``--kubeconfig TEXT``, ``--json PATH``) instead of typer's ``--port <int>``; arguments become
    ``_PlainArgument``. Flags stay bare."""
    for param in getattr(command, "params", []):
        if isinstance(param, TyperArgument) and not isinstance(param, _PlainArgument):
            if param.metavar is None:
                param.metavar = (param.name or "arg").upper()
            param.__class__ = _PlainArgument
        elif isinstance(param, TyperOption) and param.metavar is None and not param.is_flag:
            kind = param.bare_type()
            param.metavar = {"str": "TEXT", "int": "INTEGER"}.get(kind, kind.upper())


class _Group(TyperGroup):
    """The command groups: usage errors exit 4, and the command list shows each command's
    whole summary, wrapped, where click cuts it at the terminal's width with "...".
    Parameters are shown without Python types (``_plain_params``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_params(self)
        for command in self.commands.values():
            _plain_params(command)

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as error:
            _as_bad_input(error)
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            _as_bad_input(error)
            raise

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _typer(**kwargs: Any) -> typer.Typer:
    """A command group with plain help, as kubectl prints it: rich's panels cut option names
    and words at 80 columns ("--no-leader-el…") and show flags with a ``<bool>`` type; click's
    formatter wraps every line at the terminal's width instead, and shows flags bare."""
    return typer.Typer(cls=_Group, rich_markup_mode=None, no_args_is_help=True, **kwargs)


app = _typer(
    name="rollout",
    help="Progressive delivery for Kubernetes and Istio: canary, blue-green and mirror.\n\n"
    + EXIT_STATUS_HELP,
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
    kubernetes_version: str | None = typer.Option(
        None,
        "--kubernetes-version",
        metavar="X.Y",
        help="Check pod templates against this Kubernetes release's PodSpec schema "
        "(default: the newest known).",
    ),
) -> None:
    """Check Rollout and AnalysisTemplate manifests before they reach a cluster.

    Pod templates are checked against the Kubernetes PodSpec schema, unknown fields included.
    Exit 0 when clean, 1 when problems were found, 2 when input could not be read, 4 on bad
    options.
    """
    from rollout.lint import run_lint

    if kubernetes_version is not None:
        from rollout.podspec import UnknownVersion, check_version

        try:
            kubernetes_version = check_version(kubernetes_version)
        except UnknownVersion as error:
            raise typer.BadParameter(str(error), param_hint="--kubernetes-version") from None
    raise typer.Exit(
        run_lint(
            paths,
            allow_missing_templates=allow_missing_templates,
            kubernetes_version=kubernetes_version,
        )
    )


class _BadInputIsExit4(TyperCommand):
    """A command whose usage errors (missing or malformed options) exit 4, not click's 2, also
    when it runs alone (``typer.main.get_command`` of one command, without ``_Group``).

    ``rollout analyze`` gives exit 2 the meaning Inconclusive.
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as error:
            _as_bad_input(error)
            raise


ANALYZE_HELP = "\n\n".join(
    [
        "Run a Rollout's analysis gate against Prometheus, from manifests on disk.",
        "Measures every check --count times, --interval apart, with the spec's limits; prints "
        "each check's name, phase, value, message and query, then the run's phase. Stops "
        "early once the run is decided.",
        "Authentication comes from spec.analysis.prometheus where it is local: headers, "
        "bearerTokenFile, caFile, insecureSkipVerify. Secrets (bearerTokenSecret, "
        "basicAuthSecret, caSecret) are in the cluster and cannot be read here: the query "
        "goes without them.",
        "Exit status: 0 Successful, 1 Failed, 2 Inconclusive, 3 Error (Prometheus unreachable "
        "or refusing a query, or a run undecided because measurements failed), 4 bad input "
        "(unreadable or invalid manifests, no such Rollout, no spec.analysis, bad options).",
    ]
)


@app.command(cls=_BadInputIsExit4, help=ANALYZE_HELP)
def analyze(
    files: list[str] = typer.Option(
        ...,
        "--filename",
        "-f",
        metavar="FILE",
        help="Manifests holding the Rollout and its AnalysisTemplates: a file, a directory, "
        "or - for standard input. Repeatable.",
    ),
    prometheus_url: str = typer.Option(
        ...,
        "--prometheus-url",
        metavar="URL",
        help="The Prometheus to query; replaces spec.analysis.prometheus.address.",
    ),
    canary_revision: str = typer.Option(
        ..., "--canary-revision", metavar="REV", help="The canary's destination_canonical_revision."
    ),
    stable_revision: str = typer.Option(
        ...,
        "--stable-revision",
        metavar="REV",
        help="The stable revision's destination_canonical_revision.",
    ),
    rollout: str | None = typer.Option(
        None,
        "--rollout",
        metavar="NAME",
        help="The Rollout to analyse (needed when the files hold several).",
    ),
    namespace: str | None = typer.Option(
        None,
        "--namespace",
        "-n",
        metavar="NS",
        help="The namespace of manifests that set none (default: default); only Rollouts "
        "in it are considered.",
    ),
    service: str | None = typer.Option(
        None,
        "--service",
        metavar="NAME",
        help="Istio's destination_canonical_service (default: the pod template's "
        "service.istio.io/canonical-name label, else the Rollout's name).",
    ),
    count: int = typer.Option(1, "--count", min=1, metavar="N", help="Measurements per check."),
    interval: str | None = typer.Option(
        None,
        "--interval",
        metavar="DURATION",
        help="Time between measurements, e.g. 30s (default: the spec's).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Run a Rollout's analysis gate against Prometheus (help: ANALYZE_HELP)."""
    from rollout.analyze import Options, run_analyze

    options = Options(
        files=files,
        prometheus_url=prometheus_url,
        canary_revision=canary_revision,
        stable_revision=stable_revision,
        rollout=rollout,
        namespace=namespace,
        service=service,
        count=count,
        interval=interval,
        json=json_output,
    )
    raise typer.Exit(run_analyze(options))


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
    lease_name: str | None = typer.Option(
        None,
        "--lease-name",
        help="The Lease the replicas elect a leader with (default: rollout-controller, or with "
        "--shard-selector rollout-controller-<hash of the selector>).",
    ),
    shard_selector: str | None = typer.Option(
        None,
        "--shard-selector",
        help="Own only the Rollouts this label selector selects (kubectl -l syntax, e.g. "
        "'shard=a' or '!shard'); run one controller per shard, with selectors that partition "
        "the Rollouts. Default: every Rollout.",
    ),
    lease_duration: float = typer.Option(
        15.0,
        "--lease-duration",
        help="Seconds a standby waits, after it last saw the Lease renewed, before taking it.",
    ),
    renew_deadline: float = typer.Option(
        10.0,
        "--renew-deadline",
        help="Seconds after its last successful renewal at which the leader stops every write "
        "and exits (must be < --lease-duration).",
    ),
    retry_period: float = typer.Option(
        2.0,
        "--retry-period",
        help="Seconds between renewals by the leader and attempts by a standby "
        "(must be < --renew-deadline).",
    ),
    prometheus_url: str | None = typer.Option(
        None, "--prometheus-url", help="Default Prometheus address for gates."
    ),
    log_format: str = typer.Option("text", "--log-format", help="text or json."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Run the controller until SIGTERM."""
    from rollout.cluster.selector import SelectorError, parse
    from rollout.controller.leader import check_durations, check_lease_name
    from rollout.controller.main import Options, run_controller

    if log_format not in ("text", "json"):
        raise typer.BadParameter("must be text or json", param_hint="--log-format")
    try:
        check_durations(lease_duration, renew_deadline, retry_period)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if shard_selector is not None:
        try:
            if not parse(shard_selector).requirements:
                raise SelectorError("it is empty (leave it out to own every Rollout)")
        except SelectorError as error:
            raise typer.BadParameter(str(error), param_hint="--shard-selector") from None
    if lease_name is not None:
        try:
            check_lease_name(lease_name)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--lease-name") from None
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
        lease_name=lease_name,
        shard_selector=shard_selector,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        prometheus_url=prometheus_url,
        log_format=log_format,
        log_level=log_level,
    )
    raise typer.Exit(run_controller(options))


sandbox_app = _typer(
    help="A local cluster for trying the controller: a Kubernetes API emulator and workloads.",
)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("up")
def sandbox_up(
    kubeconfig: Path = typer.Option(
        ..., "--kubeconfig", help="Where to write the kubeconfig, once the API answers."
    ),
    port: int = typer.Option(0, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    verbose: bool = typer.Option(False, "--verbose", help="Log every request."),
    rps: float = typer.Option(
        50.0, "--rps", help="Simulated requests/s per VirtualService host (0: no traffic)."
    ),
    prometheus_port: int = typer.Option(
        19090, "--prometheus-port", help="Port of the sandbox's Prometheus (0: any free port)."
    ),
    no_prometheus: bool = typer.Option(
        False, "--no-prometheus", help="Start no Prometheus (and no metrics exporter)."
    ),
) -> None:
    """Run the sandbox cluster in the foreground until SIGTERM or Ctrl-C."""
    from rollout.sandbox.up import run_up

    raise typer.Exit(
        run_up(
            kubeconfig,
            port,
            verbose=verbose,
            rps=rps,
            prometheus_port=prometheus_port,
            prometheus=not no_prometheus,
        )
    )


@sandbox_app.command("traffic")
def sandbox_traffic(
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        help="The cluster to read (default: KUBECONFIG, then ~/.kube/config, then in-cluster).",
    ),
    context: str | None = typer.Option(None, "--context", help="The kubeconfig context."),
    rps: float = typer.Option(
        50.0, "--rps", help="Simulated requests/s per VirtualService host (0: no traffic)."
    ),
    prometheus_port: int = typer.Option(
        19090, "--prometheus-port", help="Port of the Prometheus it starts (0: any free port)."
    ),
    no_prometheus: bool = typer.Option(
        False, "--no-prometheus", help="Start no Prometheus (the metrics are still served)."
    ),
    metrics_port: int = typer.Option(
        0, "--metrics-port", help="Port of the Istio metrics exporter (0: any free port)."
    ),
) -> None:
    """Simulate the Istio mesh on any cluster until SIGTERM or Ctrl-C: route requests through
    its VirtualServices, DestinationRules, Services and ReplicaSets (read through the API) and
    export Istio's metrics to a real Prometheus."""
    from rollout.sandbox.mesh import run_traffic

    raise typer.Exit(
        run_traffic(
            kubeconfig,
            context=context,
            rps=rps,
            prometheus_port=prometheus_port,
            prometheus=not no_prometheus,
            metrics_port=metrics_port,
        )
    )


@app.command()
def demo(
    scenario: str = typer.Option(
        "bad-canary",
        "--scenario",
        help="good-canary, bad-canary, slow-canary, blue-green, bad-blue-green, mirror, "
        "bad-mirror or header-route.",
    ),
    json_file: Path | None = typer.Option(None, "--json", help="Write the timeline as JSON here."),
    plot_file: Path | None = typer.Option(
        None, "--plot", help="Draw weights and gate metrics over time into this PNG (matplotlib)."
    ),
    kubeconfig: Path | None = typer.Option(
        None,
        "--kubeconfig",
        help="Also write the demo sandbox's kubeconfig here, to watch the run with another "
        "client (kubectl, a test).",
    ),
    cluster_kubeconfig: Path | None = typer.Option(
        None,
        "--cluster-kubeconfig",
        help="Run on this existing cluster instead of a sandbox of its own (it must serve "
        "Rollouts and Istio's kinds): in a namespace the demo creates and deletes on exit.",
    ),
    namespace: str | None = typer.Option(
        None,
        "--namespace",
        help="With --cluster-kubeconfig: the namespace to create and use (must not exist; "
        "default: demo, or demo-<suffix> when demo exists).",
    ),
) -> None:
    """Run a rollout end to end (traffic, Prometheus, controller) in a sandbox of its own, or
    on an existing cluster with --cluster-kubeconfig.

    Exit 0 when the scenario ends as expected (promoted, or rolled back), 1 otherwise.
    """
    from rollout.demo_cli import run

    raise typer.Exit(
        run(
            scenario,
            json_file,
            plot_file,
            kubeconfig,
            cluster_kubeconfig=cluster_kubeconfig,
            namespace=namespace,
        )
    )


# -- operator commands -------------------------------------------------------------------------

# A DNS-1123 subdomain (object names) and label (namespaces), as the API server checks them.
_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"


def _object_name(value: str) -> str:
    """A Rollout name goes into the request's URL path: an empty one would read the whole
    collection (a traceback), and ``reviews/status`` another resource. Names the API server
    cannot hold (not a DNS-1123 subdomain, more than 253 characters) are bad input."""
    import re

    if len(value) > 253 or not re.fullmatch(_SUBDOMAIN, value):
        raise typer.BadParameter(
            f"{value!r} is not a Rollout name (lowercase letters, digits, '-' and '.', "
            "at most 253 characters)"
        )
    return value


def _namespace_name(value: str | None) -> str | None:
    """A namespace name (``-n``) is a DNS-1123 label, as the API server requires; it goes into
    the request's URL path too."""
    import re

    if value is not None and (len(value) > 63 or not re.fullmatch(_LABEL, value)):
        raise typer.BadParameter(
            f"{value!r} is not a namespace name (lowercase letters, digits and '-', at most "
            "63 characters)"
        )
    return value


Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        metavar="NS",
        help="Default: the kubeconfig context's namespace, else default.",
        callback=_namespace_name,
    ),
]
Context = Annotated[
    str | None, typer.Option("--context", metavar="NAME", help="The kubeconfig context.")
]
Kubeconfig = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        metavar="FILE",
        help="Default: KUBECONFIG, then ~/.kube/config, then in-cluster.",
    ),
]
Name = Annotated[
    str, typer.Argument(metavar="NAME", help="The Rollout's name.", callback=_object_name)
]


def _timeout(value: str | None, option: str) -> float | None:
    """A ``--timeout`` in seconds: whole seconds or a duration such as ``5m``; ``None`` when
    not given or zero, which means no limit, as for ``kubectl rollout status --timeout 0``
    and ``kubectl argo rollouts status --timeout 0`` (not "give up at once"). A bad value is a
    usage error (exit 4)."""
    if value is None:
        return None
    from rollout.api.duration import parse_duration

    try:
        seconds = float(parse_duration(int(value) if value.isdigit() else value))
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=option) from None
    return seconds or None


def _run(
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    command: Callable[[Target], int],
) -> None:
    """Connect, run, exit with the command's status. An error is one line on stderr: exit 3
    when the API cannot be reached (connection refused, DNS, TLS, timeout, 5xx after the
    retries), 4 for a kubeconfig or context that cannot be used, else 1 (a request refused)."""
    from rollout.cluster.access import BadConfig, ClusterError, Forbidden, Unavailable
    from rollout.ops import BadInput, connect

    try:
        code = command(connect(kubeconfig, context, namespace))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except ClusterError as error:
        text = " ".join(str(error).split())
        exit_code = EXIT_FAILED
        if isinstance(error, Unavailable):
            text = f"cannot reach the Kubernetes API: {text}"
            exit_code = EXIT_UNREACHABLE
        elif isinstance(error, BadConfig | BadInput):
            exit_code = EXIT_BAD_INPUT
        elif isinstance(error, Forbidden):
            text = f"forbidden: {text}"
        typer.echo(f"error: {text}", err=True)
        raise typer.Exit(exit_code) from None
    raise typer.Exit(code)


@app.command()
def get(
    name: Name,
    watch: bool = typer.Option(
        False,
        "--watch",
        "-w",
        help="Redraw on every change of the Rollout, its ReplicaSets, Pods and Events, "
        "until Ctrl-C.",
    ),
    output: str | None = typer.Option(
        None, "--output", "-o", metavar="FORMAT", help="json or yaml: the whole object."
    ),
    timeout: str | None = typer.Option(
        None,
        "--timeout",
        metavar="DURATION",
        help="With --watch: stop after this long (0: no limit).",
    ),
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Show a Rollout as a tree: status and reason, step, weights, images, revisions with
    their ReplicaSets and Pods, gate checks with their last values, recent Events."""
    if output not in (None, "json", "yaml"):
        raise typer.BadParameter("must be json or yaml", param_hint="--output")
    seconds = _timeout(timeout, "--timeout")
    from rollout import ops

    _run(
        kubeconfig,
        context,
        namespace,
        lambda t: ops.cmd_get(t, name, output=output, watch=watch, timeout=seconds),
    )


@app.command("list")
def list_(
    all_namespaces: bool = typer.Option(
        False, "--all-namespaces", "-A", help="Rollouts of every namespace."
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FORMAT",
        help="json or yaml: a List of the whole objects; wide: also containers, images, "
        "stable and canary revisions, stable/canary/mirror weights and the message.",
    ),
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """List Rollouts: name, strategy, phase, step, canary weight, age."""
    from rollout import ops

    if output is not None and output not in ops.LIST_OUTPUTS:
        raise typer.BadParameter(
            f"{output!r}: must be one of {', '.join(ops.LIST_OUTPUTS)}", param_hint="--output"
        )
    _run(
        kubeconfig,
        context,
        namespace,
        lambda t: ops.cmd_list(t, all_namespaces=all_namespaces, output=output),
    )


@app.command()
def status(
    name: Name,
    timeout: str | None = typer.Option(
        None,
        "--timeout",
        "-t",
        metavar="DURATION",
        help="Give up after this long, e.g. 5m (0: no limit, as for kubectl).",
    ),
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Wait for a Rollout to finish, printing each phase or step change: for CI.

    Exit 0 once Healthy with the current generation observed; 1 at once when Degraded (aborted,
    failed gate, invalid spec, missed deadline) or on an error; 2 on --timeout (for instance
    while Paused, waiting for `rollout promote`); 3 when the API cannot be reached, also after a
    minute of failed attempts to re-establish a broken watch; 4 on bad input. Watches; never
    polls.
    """
    seconds = _timeout(timeout, "--timeout")
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_status(t, name, timeout=seconds))


@app.command()
def promote(
    name: Name,
    full: bool = typer.Option(
        False, "--full", help="Skip all remaining steps and gates (status.promoteFull)."
    ),
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Move a paused Rollout on: clears its pause conditions (status subresource).

    Not paused and mid-rollout: nothing happens unless --full. Healthy: "nothing to promote",
    exit 0. Aborted: use `rollout retry`. Exit 1 only on errors.
    """
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_promote(t, name, full=full))


@app.command()
def abort(
    name: Name,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Abort the update in progress: traffic back to stable (status.abort: true).

    Nothing in progress, or already aborted: a message and exit 0.
    """
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_abort(t, name))


@app.command()
def retry(
    name: Name,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Start an aborted update again from its first step, 1/n (status.abort: false).

    Not aborted: a message and exit 0.
    """
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_retry(t, name))


@app.command()
def pause(
    name: Name,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Hold a Rollout where it is: adds the PausedByUser pause condition.

    Already paused by `rollout pause`: a message and exit 0.
    """
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_pause(t, name))


@app.command()
def resume(
    name: Name,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Remove the PausedByUser pause condition (a step pause needs `rollout promote`).

    Not paused by `rollout pause`: a message and exit 0.
    """
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_resume(t, name))


@app.command()
def undo(
    name: Name,
    to_revision: int = typer.Option(
        0,
        "--to-revision",
        min=0,
        metavar="N",
        help="The revision number to go back to (REVISION in `rollout get`); 0: the previous "
        "one (the stable revision mid-update).",
    ),
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Set the pod template back to revision N's; by default the previous revision's.

    It becomes the newest revision, with the next number. An unknown N lists the known ones.

    Changes spec: a GitOps tool will revert it unless Git changes too.
    """
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_undo(t, name, to_revision=to_revision))


@app.command()
def restart(
    name: Name,
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Roll out new pods: sets the rollout.dev/restartedAt pod template annotation.

    Changes spec: a GitOps tool will revert it unless Git changes too.
    """
    from rollout import ops

    _run(kubeconfig, context, namespace, lambda t: ops.cmd_restart(t, name))


set_app = _typer(help="Change a Rollout's spec.")
app.add_typer(set_app, name="set")


@set_app.command("image")
def set_image(
    name: Name,
    images: list[str] = typer.Argument(
        ...,
        metavar="CONTAINER=IMAGE...",
        help="New images; '*=IMAGE' sets every container and init container.",
    ),
    namespace: Namespace = None,
    context: Context = None,
    kubeconfig: Kubeconfig = None,
) -> None:
    """Set container images in the pod template: starts a rollout.

    Changes spec: a GitOps tool will revert it unless Git changes too. A container the pod
    template does not have: an error naming the ones it has, nothing changed, exit 4.
    """
    from rollout import ops

    try:
        parsed = ops.parse_images(images)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="CONTAINER=IMAGE") from None
    _run(kubeconfig, context, namespace, lambda t: ops.cmd_set_image(t, name, parsed))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
