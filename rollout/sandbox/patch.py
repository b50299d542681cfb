"""PATCH semantics of the Kubernetes apiserver, as a pure function over JSON documents.

Contract
--------
``apply_patch(document, body, content_type, strategic=...)`` returns a NEW patched document and
never mutates ``document``: a patch that fails raises ``PatchError`` and changes nothing. The
patched document is not validated here (the caller validates it as it would a PUT).

The content type is compared as the apiserver compares it: the media type before the first ``;``
(parameters such as ``charset`` are ignored), matched exactly. ``strategic`` tells whether the
resource is a built-in type (strategic merge patch accepted) or a custom resource (it is not).

* ``application/merge-patch+json``: RFC 7386. The body must be a JSON object; anything else is
  400 BadRequest, as the apiserver answers with its default ``fieldValidation=Warn``.
* ``application/json-patch+json``: RFC 6902, applied with the ``jsonpatch`` library. A body that
  is not a JSON array of operation objects is 400 BadRequest; an operation that cannot apply
  (missing path, unknown op, failing ``test``) is 422 Invalid with the apiserver's message
  "the server rejected our request due to an error in our request" and empty details (the
  underlying error is kept in ``cause``, not sent, as kube-apiserver v1.34 does not send it).
* ``application/strategic-merge-patch+json`` (built-in types only; 415 for custom resources):
  merge patch, except that the lists Kubernetes declares with ``patchStrategy: merge`` are merged
  item by item on their ``patchMergeKey`` (see ``_list_strategy``), ``metadata.finalizers`` is
  merged as a set, and the directives ``$patch`` (``replace``/``delete`` on a map or a list
  item), ``$retainKeys``, ``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>``
  are honoured as the apiserver honours them, then never stored. New list items are ordered the
  way apimachinery's strategicpatch orders them (without ``$setElementOrder``, new items come
  first). Values added by the patch lose their null members, as a typed decode would drop them.
* ``application/apply-patch+yaml`` (server-side apply): 415; the sandbox does not implement it.
* anything else: 415 with the apiserver's "accepted media types" message.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import jsonpatch
import jsonpointer

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_MERGE_PATCH",
    "PatchError",
    "apply_patch",
    "merge_patch",
]

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"

# The apiserver's own limit (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go).
MAX_JSON_PATCH_OPERATIONS: Final = 10000

_REJECTED = "the server rejected our request due to an error in our request"


class PatchError(Exception):
    """A patch the apiserver would refuse, with the HTTP code and Status reason it would send.

    ``reason`` is empty where the apiserver answers a plain 500 (StatusReasonUnknown, which its
    Status body omits). ``cause`` carries the underlying error where the apiserver puts it in
    ``details.causes`` (type UnexpectedServerResponse) rather than in the message.
    """

    def __init__(self, code: int, reason: str, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.cause = cause

    def __repr__(self) -> str:
        return f"PatchError({self.code}, {self.reason!r}, {self.message!r})"


def _bad_request(message: str) -> PatchError:
    return PatchError(400, "BadRequest", message)


def _unsupported(strategic: bool) -> PatchError:
    accepted = [JSON_PATCH, MERGE_PATCH]
    if strategic:
        accepted.append(STRATEGIC_MERGE_PATCH)
    accepted.append(APPLY_PATCH)
    return PatchError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def apply_patch(
    document: dict[str, Any], body: bytes, content_type: str, *, strategic: bool
) -> dict[str, Any]:
    """Return a NEW patched document; never mutate `document` (a failed patch changes nothing)."""
    media_type = content_type
    separator = media_type.find(";")
    if separator > 0:
        media_type = media_type[:separator]
    if media_type == MERGE_PATCH:
        patch = _decode(body, "error decoding patch: ")
        if not isinstance(patch, dict):
            if patch is None:
                raise _bad_request("Invalid JSON Patch")
            raise _bad_request(
                "error decoding patch: json: cannot unmarshal "
                f"{_go_kind(patch)} into Go value of type map[string]interface {{}}"
            )
        result: dict[str, Any] = merge_patch(document, patch)
        return result
    if media_type == JSON_PATCH:
        return _apply_json_patch(document, body)
    if media_type == STRATEGIC_MERGE_PATCH and strategic:
        return _apply_strategic(document, body)
    if media_type == APPLY_PATCH:
        raise PatchError(
            415,
            "UnsupportedMediaType",
            f"server-side apply ({APPLY_PATCH}) is not supported by the sandbox apiserver: "
            f"send {MERGE_PATCH} or {JSON_PATCH}"
            + (f" or {STRATEGIC_MERGE_PATCH}" if strategic else ""),
        )
    raise _unsupported(strategic)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch(target, patch): a new value; neither argument is mutated."""
    return _merge_owned(copy.deepcopy(target), patch)


def _merge_owned(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_owned(target.get(key), value)
    return target


# --- decoding ------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _decode(body: bytes, prefix: str) -> Any:
    """Parse JSON as Go's encoding/json would: UTF-8 only, no NaN/Infinity."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise _bad_request(f"{prefix}{error}") from None


def _go_kind(value: Any) -> str:
    """The JSON type name Go's encoding/json uses in its unmarshal errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --- JSON patch (RFC 6902) -----------------------------------------------------------------


def _apply_json_patch(document: dict[str, Any], body: bytes) -> dict[str, Any]:
    operations = _decode(body, "error decoding patch: ")
    if operations is None:
        # Go decodes `null` into an empty patch: nothing to apply.
        return copy.deepcopy(document)
    if not isinstance(operations, list):
        raise _bad_request(
            "error decoding patch: json: cannot unmarshal "
            f"{_go_kind(operations)} into Go value of type []handlers.jsonPatchOp"
        )
    for operation in operations:
        if operation is None:
            continue
        if not isinstance(operation, dict):
            raise _bad_request(
                "error decoding patch: json: cannot unmarshal "
                f"{_go_kind(operation)} into Go value of type handlers.jsonPatchOp"
            )
        for member in ("op", "path", "from"):
            value = operation.get(member)
            if value is not None and not isinstance(value, str):
                raise _bad_request(
                    f"error decoding patch: json: cannot unmarshal {_go_kind(value)} into Go "
                    f"struct field jsonPatchOp.{member} of type string"
                )
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(operations)}",
        )
    try:
        patch = jsonpatch.JsonPatch(operations)
        patched = patch.apply(copy.deepcopy(document), in_place=True)
    except (
        jsonpatch.JsonPatchException,
        jsonpointer.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
    ) as error:
        raise PatchError(422, "Invalid", _REJECTED, cause=str(error)) from None
    if not isinstance(patched, dict):
        # The apiserver fails to decode the result into an object.
        text = json.dumps(patched, separators=(",", ":"))
        raise PatchError(
            422,
            "Invalid",
            f'"" is invalid: patch: Invalid value: "{text}": couldn\'t get version/kind; '
            f"json parse error: json: cannot unmarshal {_go_kind(patched)} into Go value of "
            'type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
            'Kind string "json:\\"kind,omitempty\\"" }',
        )
    return patched


# --- strategic merge patch -----------------------------------------------------------------

_DIRECTIVE: Final = "$patch"
_RETAIN_KEYS: Final = "$retainKeys"
_SET_ORDER: Final = "$setElementOrder"
_DELETE_PRIMITIVES: Final = "$deleteFromPrimitiveList"

Path = tuple[str, ...]


@dataclass(frozen=True)
class _Merge:
    """A list with ``patchStrategy: merge``; ``key`` is its patchMergeKey ("" for scalars)."""

    key: str


_PRIMITIVES: Final = _Merge("")

# Lists of a PodSpec (in a Pod, or in any `template.spec`), by field name.
_POD_SPEC_LISTS: Final = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "schedulingGates": "name",
}
_CONTAINER_LISTS: Final = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}
_CONTAINER_FIELDS: Final = frozenset({"containers", "initContainers", "ephemeralContainers"})


def _list_strategy(path: Path, kind: str) -> _Merge | None:
    """The patch strategy the built-in types declare for the list at `path` (None: replace).

    `path` holds the field names from the object's root; list items add nothing to it, so a
    container's env is at (..., "containers", "env"). Lists not named here (tolerations,
    envFrom, containerStatuses, ingress rules, ...) have no strategy and are replaced.
    """
    field, parent = path[-1], path[:-1]
    if parent and parent[-1] == "metadata":
        if field == "finalizers":
            return _PRIMITIVES
        if field == "ownerReferences":
            return _Merge("uid")
        return None
    if parent and parent[-1] in _CONTAINER_FIELDS:
        key = _CONTAINER_LISTS.get(field)
        return _Merge(key) if key else None
    if (parent == ("spec",) and kind == "Pod") or parent[-2:] == ("template", "spec"):
        key = _POD_SPEC_LISTS.get(field)
        return _Merge(key) if key else None
    if parent == ("status",):
        if field == "conditions":
            return _Merge("type")
        if kind == "Pod" and field in ("podIPs", "hostIPs"):
            return _Merge("ip")
        if kind == "Node" and field == "addresses":
            return _Merge("type")
        return None
    if parent == ("spec",) and kind == "Service" and field == "ports":
        return _Merge("port")
    if parent == ("spec",) and kind == "Node" and field == "podCIDRs":
        return _PRIMITIVES
    if parent == () and kind == "ServiceAccount" and field == "secrets":
        return _Merge("name")
    return None


def _internal(message: str) -> PatchError:
    """An error apimachinery returns unwrapped, which the apiserver answers with a plain 500."""
    return PatchError(500, "", message)


def _apply_strategic(document: dict[str, Any], body: bytes) -> dict[str, Any]:
    patch = _decode(body, "")
    if patch is None:
        return copy.deepcopy(document)
    if not isinstance(patch, dict):
        raise _bad_request(
            f"json: cannot unmarshal {_go_kind(patch)} into Go value of type "
            "map[string]interface {}"
        )
    kind = document.get("kind")
    return _smp_map(copy.deepcopy(document), patch, (), kind if isinstance(kind, str) else "")


def _same(left: Any, right: Any) -> bool:
    """Go's interface equality on decoded JSON: 1 and 1.0 and true all differ."""
    return type(left) is type(right) and bool(left == right)


def _contains(values: list[Any], value: Any) -> bool:
    return any(_same(value, candidate) for candidate in values)


def _clean(value: Any) -> Any:
    """A value stored as the patch gave it: a typed decode drops nulls and `$` directives."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _fresh(value: Any, path: Path, kind: str) -> Any:
    """A patch value for a field the original does not have."""
    if isinstance(value, dict):
        return _smp_map({}, value, path, kind)
    if isinstance(value, list):
        strategy = _list_strategy(path, kind)
        if strategy is not None:
            return _smp_list([], value, strategy, False, path, kind)
    return _clean(value)


def _directive_key(key: str, prefix: str, error: str) -> str:
    head, _, field = key.partition("/")
    if head != prefix or "/" not in key:
        raise _bad_request(error)
    return field


def _smp_map(
    original: dict[str, Any], patch: dict[str, Any], path: Path, kind: str
) -> dict[str, Any]:
    """apimachinery's mergeMap; `original` is owned (mutated and returned)."""
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            replacement: dict[str, Any] = _clean(patch)  # `_clean` drops `$patch` too
            return replacement
        if directive == "delete":
            return {}
        raise _internal(f"unknown patch type: {directive} in map: {patch}")
    patch = dict(patch)

    if _RETAIN_KEYS in patch:
        retain = patch.pop(_RETAIN_KEYS)
        if not isinstance(retain, list):
            raise _bad_request("invalid patch format of retainKeys")
        for key, value in patch.items():
            if value is None or key.startswith((_DELETE_PRIMITIVES + "/", _SET_ORDER + "/")):
                continue
            if key not in retain:
                raise _bad_request("invalid patch format of retainKeys")
        for key in [k for k in original if k not in retain]:
            del original[key]

    for order_key in [k for k in patch if k.startswith(_SET_ORDER + "/")]:
        order = patch.pop(order_key)
        field = _directive_key(
            order_key, _SET_ORDER, "invalid patch format of setElementOrder list"
        )
        _apply_element_order(original, patch, field, order, path + (field,), kind)

    for key, value in patch.items():
        is_delete_list = False
        if key.startswith(_DELETE_PRIMITIVES + "/"):
            key = _directive_key(key, _DELETE_PRIMITIVES, "invalid patch format of primitive list")
            is_delete_list = True
        elif key.startswith("$"):
            continue  # an unknown directive: dropped, as a typed decode drops unknown fields
        if value is None:
            original.pop(key, None)
            continue
        field_path = path + (key,)
        if key not in original:
            if not is_delete_list:
                original[key] = _fresh(value, field_path, kind)
            continue
        current = original[key]
        if isinstance(current, dict) and isinstance(value, dict):
            original[key] = _smp_map(current, value, field_path, kind)
        elif isinstance(current, list) and isinstance(value, list):
            strategy = _list_strategy(field_path, kind)
            if strategy is None:
                if not is_delete_list:
                    original[key] = _clean(value)
            else:
                original[key] = _smp_list(
                    current, value, strategy, is_delete_list, field_path, kind
                )
        elif not is_delete_list:
            original[key] = _fresh(value, field_path, kind)
    return original


def _element_kind(*lists: list[Any]) -> type[Any] | None:
    """apimachinery's sliceElementType: all items of one JSON type, and no lists of lists."""
    found: type[Any] | None = None
    for items in lists:
        for item in items:
            if found is None:
                found = type(item)
                if found is list:
                    cause = "lists of lists are not supported"
                    raise PatchError(422, "Invalid", _REJECTED, cause=cause)
            elif type(item) is not found:
                raise _internal(f"list element types are not identical: {lists}")
    return found


def _smp_list(
    original: list[Any],
    patch: list[Any],
    strategy: _Merge,
    is_delete_list: bool,
    path: Path,
    kind: str,
) -> list[Any]:
    """apimachinery's mergeSlice for a list with patchStrategy merge; `original` is owned."""
    if not original and not patch:
        return original
    element = _element_kind(original, patch)
    if element is not dict:
        if is_delete_list:
            return [item for item in original if not _contains(patch, item)]
        merged: list[Any] = []
        for item in original + patch:
            if not _contains(merged, item):
                merged.append(_clean(item))
        in_patch = [item for item in merged if _contains(patch, item)]
        server_only = [item for item in merged if not _contains(patch, item)]
        return _normalize_order(in_patch, server_only, patch, original, "")

    key = strategy.key
    if not key:
        raise _internal("cannot merge lists without merge key for type map")
    original, patch = _special_elements(original, patch, key)
    merged = list(original)
    for item in patch:
        if key not in item:
            raise _internal(f"map: {item} does not contain declared merge key: {key}")
        index = _find_by_key(merged, key, item[key])
        if index is None:
            merged.append(_fresh(item, path, kind))
        else:
            merged[index] = _smp_map(merged[index], item, path, kind)
    in_patch, server_only = _partition_by_key(merged, patch, key)
    return _normalize_order(in_patch, server_only, patch, original, key)


def _special_elements(
    original: list[Any], patch: list[Any], key: str
) -> tuple[list[Any], list[Any]]:
    """apimachinery's mergeSliceWithSpecialElements: `$patch` items of a list of maps."""
    plain: list[Any] = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if key not in item:
                raise _internal(f"map: {item} does not contain declared merge key: {key}")
            original = [
                entry
                for entry in original
                if not (isinstance(entry, dict) and key in entry and _same(entry[key], item[key]))
            ]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _internal("merging lists cannot yet be specified in the patch")
        else:
            raise _internal(f"unknown patch type: {directive} in map: {item}")
    if replace:
        return [_clean(item) for item in plain], []
    return original, plain


def _find_by_key(items: list[Any], key: str, value: Any) -> int | None:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise _internal(f"value for key {index} is not a map.")
        if key in item and _same(item[key], value):
            return index
    return None


def _partition_by_key(
    merged: list[Any], partition_by: list[Any], key: str
) -> tuple[list[Any], list[Any]]:
    in_patch: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        if not isinstance(item, dict) or key not in item:
            raise _internal(f"map: {item} does not contain declared merge key: {key}")
        if _find_by_key(partition_by, key, item[key]) is None:
            server_only.append(item)
        else:
            in_patch.append(item)
    return in_patch, server_only


def _order_value(item: Any, key: str) -> Any:
    if not key:
        return item
    return item.get(key) if isinstance(item, dict) else None


def _index(order: list[Any], item: Any, key: str) -> int:
    wanted = _order_value(item, key)
    for position, candidate in enumerate(order):
        if _same(wanted, _order_value(candidate, key)):
            return position
    return -1


def _sorted_by(items: list[Any], order: list[Any], key: str) -> list[Any]:
    """apimachinery's normalizeSliceOrder: stable sort by position in `order`, unknowns last."""
    if key:
        for item in items + order:
            if not isinstance(item, dict) or key not in item:
                raise _internal(f"map: {item} does not contain declared merge key: {key}")

    def position(item: Any) -> int:
        found = _index(order, item, key)
        return found if found >= 0 else len(order)

    return sorted(items, key=position)


def _normalize_order(
    in_patch: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    key: str,
) -> list[Any]:
    """apimachinery's normalizeElementOrder + mergeSortedSlice.

    Patch items keep the patch's order, server-only items the live order; a server-only item
    goes before a patch item only when both are in the live list and it was before it there.
    So, without `$setElementOrder`, items new to the list come before the server-only ones.
    """
    right = _sorted_by(in_patch, patch_order, key)
    left = _sorted_by(server_only, server_order, key)
    result: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if j >= len(right):
            result.append(left[i])
            i += 1
        elif i >= len(left):
            result.append(right[j])
            j += 1
        else:
            li, ri = _index(server_order, left[i], key), _index(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                result.append(left[i])
                i += 1
            else:
                result.append(right[j])
                j += 1
    return result


def _apply_element_order(
    original: dict[str, Any],
    patch: dict[str, Any],
    field: str,
    order: Any,
    field_path: Path,
    kind: str,
) -> None:
    """apimachinery's mergePatchIntoOriginal for one `$setElementOrder/<field>` directive."""
    if not isinstance(order, list):
        raise _bad_request("invalid patch format of setElementOrder list")
    current = original.get(field)
    change = patch.pop(field, None)
    if current is not None and not isinstance(current, list):
        raise _internal(f"expected []interface{{}}, but got {type(current).__name__}")
    if change is not None and not isinstance(change, list):
        raise _internal(f"expected []interface{{}}, but got {type(change).__name__}")
    strategy = _list_strategy(field_path, kind)
    if strategy is None:
        # A list that is not merged: the patch list (if any) replaces it, the order is moot.
        if change is not None:
            original[field] = _clean(change)
        return
    key = strategy.key
    _check_order(change or [], order, key)
    if current is None and change is None:
        return
    merged = _smp_list(list(current or []), change or [], strategy, False, field_path, kind)
    if key:
        in_order, server_only = _partition_by_key(merged, order, key)
    else:
        in_order = [item for item in merged if _contains(order, item)]
        server_only = [item for item in merged if not _contains(order, item)]
    original[field] = _normalize_order(in_order, server_only, order, list(current or []), key)


def _check_order(patch_list: list[Any], order: list[Any], key: str) -> None:
    """apimachinery's validatePatchWithSetOrderList: patch items in the order list's order."""
    if not order or not patch_list:
        return
    if key:
        items = [
            item
            for item in patch_list
            if not (isinstance(item, dict) and item.get(_DIRECTIVE) == "delete")
        ]
    else:
        items = patch_list
    equal: Callable[[Any, Any], bool]
    if key:

        def equal(left: Any, right: Any) -> bool:
            for item in (left, right):
                if not isinstance(item, dict) or key not in item:
                    raise _internal(f"map: {item} does not contain declared merge key: {key}")
            return _same(left[key], right[key])

    else:
        equal = _same
    p = s = 0
    while p < len(items) and s < len(order):
        if isinstance(items[p], dict) and _DIRECTIVE in items[p]:
            p += 1
            continue
        if equal(items[p], order[s]):
            p += 1
        s += 1
    if p < len(items) and s >= len(order):
        raise _internal(
            f"The order in patch list:\n{patch_list}\n doesn't match {_SET_ORDER} list:\n{order}\n"
        )
