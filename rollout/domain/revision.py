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
