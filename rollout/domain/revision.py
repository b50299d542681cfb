"""Revisions: the pod-template hash that names a version of the workload. Pure.

The hash is a function of the pod template as the user wrote it, so the same template always
names the same ReplicaSet (``<rollout>-<hash>``), across restarts and controllers.
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


def replica_set_name(rollout: str, revision: str) -> str:
    return f"{rollout}-{revision}"
