"""``--shard-selector``: label selectors parsed and matched as Kubernetes does, checked before
anything starts, and the Lease name each shard gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rollout.cluster.selector import SelectorError, parse
from rollout.controller.leader import LEASE_NAME, check_lease_name, lease_name_for
from rollout.controller.main import Options, run_controller

ROLLOUT = str(Path(sys.executable).parent / "rollout")


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("shard=a", {"shard": "a"}, True),
        ("shard==a", {"shard": "a"}, True),
        ("shard=a", {"shard": "b"}, False),
        ("shard=a", {}, False),
        ("shard!=a", {}, True),  # != and notin match a missing label, as in Kubernetes
        ("shard!=a", {"shard": "a"}, False),
        ("shard in (a, b)", {"shard": "b"}, True),
        ("shard in (a,b)", {"shard": "c"}, False),
        ("shard notin (a,b)", {}, True),
        ("shard notin (a,b)", {"shard": "a"}, False),
        ("shard", {"shard": ""}, True),
        ("!shard", {"shard": ""}, False),
        ("!shard", {"other": "x"}, True),
        ("shard=", {"shard": ""}, True),
        ("shard in ()", {"shard": ""}, True),  # the empty value, as kube-apiserver reads it
        ("shard in ()", {}, False),
        ("shard in (a,)", {"shard": ""}, True),
        ("tier=web,!shard", {"tier": "web"}, True),
        ("tier=web, !shard", {"tier": "web", "shard": "a"}, False),
        ("rollout.dev/shard=a", {"rollout.dev/shard": "a"}, True),
        ("  ", {"anything": "x"}, True),
    ],
)
def test_matches_as_kubernetes(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse(text).matches(labels) is expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("shard=a,", "end with ','"),
        (",shard=a", "expected a label key"),
        ("shard in (a", "expected a value or ')'"),
        ("shard in a", "expected '('"),
        ("shard in (a b)", "expected ',' or ')'"),
        ("shard=a b", "expected ','"),
        ("shard = a = b", "expected ','"),
        ("!shard=a", "expected ','"),
        ("shard>3", "'<' and '>' are not supported"),
        ("shard=-a", "invalid label value"),
        ("shard=" + "a" * 64, "invalid label value"),
        ("-shard=a", "invalid label key"),
        ("Rollout.Dev/shard=a", "prefix must be a DNS subdomain"),
        ("/shard=a", "prefix must be a DNS subdomain"),
        ("a" * 64 + "=x", "invalid label key"),
        ("shard=a)", "expected ','"),
        ("shard foo", "after the key"),
        # Kubernetes skips only space, tab, CR and LF: other whitespace is part of the word
        ("shard=a\f", "invalid label value"),
        ("shard=a\u00a0", "invalid label value"),
        ("\u00a0shard=a", "invalid label key"),
    ],
)
def test_bad_selectors_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(SelectorError, match=None) as caught:
        parse(text)
    assert reason in str(caught.value), str(caught.value)


def test_canonical_form_is_spelling_independent() -> None:
    assert str(parse("b in (y, x),a==1")) == str(parse("a=1, b in (x,y)")) == "a=1,b in (x,y)"
    assert str(parse("!shard")) == "!shard"
    assert str(parse("shard")) == "shard"


def test_lease_names() -> None:
    assert lease_name_for(None) == LEASE_NAME == "rollout-controller"
    a, b = lease_name_for("shard=a"), lease_name_for("shard=b")
    assert a != b and a.startswith("rollout-controller-") and len(a) == len(LEASE_NAME) + 11
    assert lease_name_for(str(parse("shard==a"))) == a  # two spellings, one Lease
    check_lease_name(a)
    for bad in ("Rollouts", "a_b", "-a", "a" * 254):
        with pytest.raises(ValueError, match="--lease-name"):
            check_lease_name(bad)


def test_a_bad_selector_is_exit_2_and_nothing_starts(capsys: pytest.CaptureFixture[str]) -> None:
    # No kubeconfig is read and no port is opened: the selector is refused first.
    options = Options(kubeconfig="/nonexistent", shard_selector="shard in (a", metrics_port=1)
    assert run_controller(options) == 2
    assert "--shard-selector: shard in: expected a value or ')'" in capsys.readouterr().err
    assert run_controller(Options(kubeconfig="/nonexistent", shard_selector=" ")) == 2
    assert run_controller(Options(kubeconfig="/nonexistent", lease_name="Bad_Name")) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard-selector", "shard=a,"], "--shard-selector"),
        (["--shard-selector", ""], "it is empty"),
        (["--lease-name", "Bad_Name"], "--lease-name"),
    ],
)
def test_the_command_refuses_bad_options(args: list[str], message: str) -> None:
    result = subprocess.run(
        [ROLLOUT, "controller", "--kubeconfig", "/nonexistent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 4, result  # bad input (rollout.cli)
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
