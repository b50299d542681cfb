"""Revisions: the pod-template hash that names a version of the workload. Pure.

The hash is a function of the pod template as the user wrote it, so the same template always
names the same ReplicaSet (``<rollout>-<hash>``), across restarts and controllers.

A real apiserver applies the pod defaults to a ReplicaSet's template as it stores it
(``imagePullPolicy``, ``terminationMessagePath``, ``dnsPolicy``, ``restartPolicy``,
``schedulerName``, ``securityContext: {}`` ...), while the Rollout's template, in a custom
resource, is stored as written. So a ReplicaSet's stored template does not hash to its revision;
the controller therefore records the template it hashed on the ReplicaSet
(``TEMPLATE_ANNOTATION``), and going back to a revision (``rollout undo``) uses that record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Kubernetes' SafeEncodeString alphabet: no vowels (no words), no look-alike characters.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LENGTH = 10
HASH_LABEL = "rollout.dev/pod-template-hash"


def pod_template_hash(template: dict[str, Any]) -> str:
    """A short, stable, label-safe hash of a pod template."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    number = int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")
    chars = []
    for _ in range(HASH_LENGTH):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


TEMPLATE_ANNOTATION = "rollout.dev/pod-template"
# The annotations of an object may total 256 KiB (apimachinery's TotalAnnotationSizeLimitB); a
# template bigger than this is not recorded, so that the ReplicaSet's own annotations still fit.
MAX_RECORDED_TEMPLATE = 64 * 1024


def record_template(template: dict[str, Any]) -> str | None:
    """The value of ``TEMPLATE_ANNOTATION`` for a ReplicaSet of ``template`` (the template the
    revision's hash was computed from): compact JSON, or None when longer than
    ``MAX_RECORDED_TEMPLATE`` characters."""
    text = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_RECORDED_TEMPLATE else None


def recorded_template(annotations: dict[str, str] | None, revision: str) -> dict[str, Any] | None:
    """The template recorded in a ReplicaSet's ``annotations`` if it hashes to ``revision``;
    None when there is no record, it is not a JSON object, or it names another revision (an
    edited annotation is not trusted)."""
    text = (annotations or {}).get(TEMPLATE_ANNOTATION)
    if text is None:
        return None
    try:
        template = json.loads(text)
    except ValueError:
        return None
    if not isinstance(template, dict) or pod_template_hash(template) != revision:
        return None
    return template


def replica_set_name(rollout: str, revision: str) -> str:
    return f"{rollout}-{revision}"


# The revision number of a ReplicaSet (and, for the current template, of its Rollout): 1, 2,
# 3 ... in the order revisions were rolled out, as Deployments number theirs with
# ``deployment.kubernetes.io/revision`` and Argo Rollouts with ``rollout.argoproj.io/revision``.
REVISION_ANNOTATION = "rollout.dev/revision"


def parse_revision_number(annotations: dict[str, str] | None) -> int | None:
    """The number in ``REVISION_ANNOTATION`` of ``annotations``: a positive integer, or None
    when absent or not one (a hand-edited value is renumbered, never trusted)."""
    text = (annotations or {}).get(REVISION_ANNOTATION)
    if not isinstance(text, str) or not text.isdecimal():
        return None
    number = int(text)
    return number if number > 0 else None


@dataclass(frozen=True)
class Numbered:
    """One ReplicaSet as the numbering sees it: its revision (the pod-template hash), its
    number (None: none yet) and when it was created (None: unknown)."""

    revision: str
    number: int | None
    created_at: datetime | None = None


def revision_numbers(replica_sets: Iterable[Numbered], current: str | None) -> dict[str, int]:
    """The number each revision should carry, ``{hash: number}``; the rule of Deployments.

    * A number already carried is kept.
    * ReplicaSets without one (made before numbering existed) are numbered after the highest
      number, oldest first (by creation time; within the same second ``current`` last, then
      by hash), so an upgraded controller numbers the revisions it finds 1..n in the order
      they were made.
    * An old ReplicaSet that lost its number while others kept theirs (a user deleted or
      garbled the annotation) takes back a free number below the highest one carried, the
      highest free first (``{1, 3, 4}`` gives it 2 again): numbering it after the highest
      would push the current revision's number up although nothing was rolled out.
    * ``current``, the revision of the Rollout's pod template (it may have no ReplicaSet yet),
      carries the highest number: a new revision gets the highest other number + 1, and so
      does an old revision that comes back (``rollout undo``, a revert in Git), as Deployments
      renumber a ReplicaSet they roll back to. Its number only ever grows.

    Pure and idempotent: applying the result and asking again gives the same numbers.
    """
    sets = list(replica_sets)
    numbers = {rs.revision: rs.number for rs in sets if rs.number is not None}
    top = max(numbers.values(), default=0)
    unnumbered = [rs for rs in sets if rs.number is None]
    unnumbered.sort(
        key=lambda rs: (
            rs.created_at.timestamp() if rs.created_at else 0,
            rs.revision == current,
            rs.revision,
        )
    )
    # Free numbers below the highest carried one, for old ReplicaSets that lost theirs: the
    # highest ones, given in age order (the oldest gets the lowest of them).
    taken = set(numbers.values())
    lost = [rs for rs in unnumbered if rs.revision != current]
    free = [n for n in range(1, top) if n not in taken][-len(lost) :] if lost else []
    for rs in unnumbered:
        if free and rs.revision != current:
            numbers[rs.revision] = free.pop(0)
            continue
        top += 1
        numbers[rs.revision] = top
    if current is not None:
        others = max((n for r, n in numbers.items() if r != current), default=0)
        if numbers.get(current, 0) <= others:
            numbers[current] = others + 1
    return numbers
