"""Label selectors as Kubernetes parses them (``labels.Parse`` in k8s.io/apimachinery).

Used to check ``rollout controller --shard-selector`` before anything starts: the API would
refuse a bad one at the first list, and a controller that cannot fill its cache is no use.
Syntax as ``kubectl -l``: requirements joined by commas, each one of ``key=value``,
``key==value``, ``key!=value``, ``key in (v1,v2)``, ``key notin (v1,v2)``, ``key`` (exists) and
``!key`` (does not exist). Keys are qualified names (an optional DNS-subdomain prefix of at most
253 characters and ``/``, then a name of at most 63: alphanumerics, ``-``, ``_``, ``.``, starting
and ending alphanumeric); values are empty or of the same form as a name (at most 63 characters);
an empty place in a list of values is the empty value (``a in ()`` selects ``a: ""``, as
kube-apiserver reads it). Kubernetes' ``key > 3`` and ``key < 3`` (integer
comparisons) are refused here: a shard is chosen by what a label is, not by a number.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
# Kubernetes' lexer skips only these four as whitespace: any other character (a form feed, a
# no-break space) is part of a word, so "shard=a\f" is the value "a\f", which is invalid.
_TOKEN = re.compile(r"[ \t\r\n]*(==|!=|=|!|\(|\)|,|<|>|[^ \t\r\n=!(),<>]+)")


class SelectorError(ValueError):
    """A selector Kubernetes would refuse; the message says which part and why."""


@dataclass(frozen=True)
class Requirement:
    """One requirement: ``op`` is ``=``, ``!=``, ``in``, ``notin``, ``exists`` or ``!``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes' ``Requirement.Matches``: ``!=`` and ``notin`` match a missing label."""
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values

    def __str__(self) -> str:
        if self.op == "exists":
            return self.key
        if self.op == "!":
            return f"!{self.key}"
        if self.op in ("=", "!="):
            return f"{self.key}{self.op}{self.values[0]}"
        return f"{self.key} {self.op} ({','.join(self.values)})"


@dataclass(frozen=True)
class Selector:
    """A parsed selector: all of its requirements must match (empty: everything)."""

    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        """The canonical form, as Kubernetes prints it: requirements sorted by key, values
        sorted, ``==`` written ``=`` (so that two spellings of one selector compare equal)."""
        return ",".join(str(r) for r in sorted(self.requirements, key=lambda r: (r.key, r.op)))


def check_key(key: str) -> None:
    """Raise ``SelectorError`` unless ``key`` is a qualified name (``IsQualifiedName``)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        raise SelectorError(
            f"invalid label key {key!r}: the prefix must be a DNS subdomain "
            "(lowercase alphanumerics, '-' and '.', at most 253 characters)"
        )
    if not name or len(name) > 63 or not _NAME.match(name):
        raise SelectorError(
            f"invalid label key {key!r}: the name must be at most 63 characters, alphanumerics, "
            "'-', '_' or '.', starting and ending with an alphanumeric"
        )


def check_value(value: str) -> None:
    """Raise ``SelectorError`` unless ``value`` is a valid label value (``IsValidLabelValue``)."""
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise SelectorError(
            f"invalid label value {value!r}: at most 63 characters, alphanumerics, '-', '_' or "
            "'.', starting and ending with an alphanumeric (or empty)"
        )


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only trailing whitespace is left
            break
        tokens.append(match.group(1))
        position = match.end()
    return tokens


OPERATORS = ("=", "==", "!=", "in", "notin")


def parse(text: str) -> Selector:
    """Parse ``text`` as Kubernetes does; ``SelectorError`` naming the fault otherwise.

    An empty (or blank) text is the selector that matches everything."""
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    i = 0

    def at(j: int) -> str:
        return tokens[j] if j < len(tokens) else ""

    while i < len(tokens):
        negated = at(i) == "!"
        if negated:
            i += 1
        key = at(i)
        if key in ("", "!", "=", "==", "!=", "(", ")", ",", "<", ">"):
            raise SelectorError(f"unable to parse requirement: expected a label key, found {key!r}")
        check_key(key)
        i += 1
        op = at(i)
        if negated or op in ("", ","):
            requirements.append(Requirement(key, "!" if negated else "exists"))
        elif op in ("<", ">"):
            raise SelectorError(
                f"{key} {op} ...: the integer comparisons '<' and '>' are not supported here"
            )
        elif op in ("=", "==", "!="):
            value = at(i + 1)
            if value in ("", ","):
                value, i = "", i + 1
            elif value in ("!", "=", "==", "!=", "(", ")", "<", ">"):
                raise SelectorError(f"{key}{op}: expected a value, found {value!r}")
            else:
                i += 2
            check_value(value)
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        elif op in ("in", "notin"):
            if at(i + 1) != "(":
                raise SelectorError(f"{key} {op}: expected '(' after {op!r}")
            i += 2
            values: list[str] = []
            want_value = True
            while at(i) != ")":
                token = at(i)
                if token == ",":
                    if want_value:
                        values.append("")  # an empty value, as in "a in (,x)"
                    want_value = True
                elif token in ("", "!", "=", "==", "!=", "(", "<", ">"):
                    raise SelectorError(f"{key} {op}: expected a value or ')', found {token!r}")
                elif not want_value:
                    raise SelectorError(f"{key} {op}: expected ',' or ')', found {token!r}")
                else:
                    check_value(token)
                    values.append(token)
                    want_value = False
                i += 1
            if want_value:
                values.append("")  # "a in ()" is "a in ('')", as labels.Parse reads it
            i += 1
            requirements.append(Requirement(key, op, tuple(sorted(set(values)))))
        else:
            raise SelectorError(
                f"unable to parse requirement {key!r}: expected one of "
                f"{', '.join(repr(o) for o in OPERATORS)} or ',' after the key, found {op!r}"
            )
        if i < len(tokens):
            if at(i) != ",":
                raise SelectorError(f"expected ',' between requirements, found {at(i)!r}")
            i += 1
            if i >= len(tokens):
                raise SelectorError("a selector cannot end with ','")
    return Selector(tuple(requirements))
