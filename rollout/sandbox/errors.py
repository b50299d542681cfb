"""API errors as the Kubernetes apiserver sends them: ``kind: Status`` bodies with a reason.

Every failure of the emulator is an ``ApiError``; the server turns it into the JSON body and
HTTP code a real apiserver would send, so the official client raises the same ``ApiException``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApiError(Exception):
    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:  # a plain 500 (StatusReasonUnknown) carries no reason
            body["reason"] = self.reason
        if self.details:
            body["details"] = self.details
        return body


class PageNotFound(ApiError):
    """A path no API group serves: the apiserver's plain-text ``404 page not found``.

    kube-apiserver answers with its HTTP mux's NotFound handler, not a ``Status``, for a path
    outside ``/api`` and ``/apis`` and for any path under ``/apis/GROUP`` when GROUP is unknown
    or served only by CRDs (the apiextensions handler delegates unknown versions and resources).
    Built-in groups (``/api``, ``/apis/apps``...) answer a ``NotFound`` Status instead.
    """

    TEXT = b"404 page not found\n"

    def __init__(self) -> None:
        super().__init__(404, "NotFound", "404 page not found")


def _about(code: int, reason: str, group: str, plural: str, name: str, what: str) -> ApiError:
    """An error about one object; ``what`` says it, with ``{resource}`` and ``{name}``."""
    resource = f"{plural}.{group}" if group else plural
    return ApiError(
        code,
        reason,
        what.format(resource=resource, name=name),
        {"name": name, "group": group, "kind": plural},
    )


def not_found(group: str, plural: str, name: str) -> ApiError:
    return _about(404, "NotFound", group, plural, name, '{resource} "{name}" not found')


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return _about(409, "AlreadyExists", group, plural, name, '{resource} "{name}" already exists')


def conflict(group: str, plural: str, name: str) -> ApiError:
    return _about(
        409,
        "Conflict",
        group,
        plural,
        name,
        'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
    )


def invalid(group: str, kind: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid with ``(field, reason, message)`` causes, worded as the apiserver does
    (apimachinery's ``NewInvalid``: one cause as it is, several as a ``[a, b]`` aggregate)."""
    qualified = f"{kind}.{group}" if group else kind
    summary = ", ".join(f"{f}: {m}" if f else m for f, _, m in causes)
    if len(causes) > 1:
        summary = f"[{summary}]"
    return ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {summary}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes],
        },
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)
