"""The revision numbering rule (``rollout.domain.revision.revision_numbers``): Deployments'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollout.domain.revision import Numbered, parse_revision_number, revision_numbers

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def test_a_new_revision_gets_the_highest_number_plus_one() -> None:
    assert revision_numbers([], "a") == {"a": 1}
    found = [Numbered("a", 1), Numbered("b", 2)]
    assert revision_numbers(found, "c") == {"a": 1, "b": 2, "c": 3}


def test_numbers_already_carried_are_kept() -> None:
    found = [Numbered("a", 1), Numbered("b", 2), Numbered("c", 3)]
    assert revision_numbers(found, "c") == {"a": 1, "b": 2, "c": 3}
    assert revision_numbers(found, None) == {"a": 1, "b": 2, "c": 3}


def test_an_old_revision_that_comes_back_gets_the_next_number() -> None:
    found = [Numbered("a", 1), Numbered("b", 2), Numbered("c", 3)]
    assert revision_numbers(found, "a") == {"a": 4, "b": 2, "c": 3}
    # Idempotent: once it carries 4 it stays 4.
    again = [Numbered("a", 4), Numbered("b", 2), Numbered("c", 3)]
    assert revision_numbers(again, "a") == {"a": 4, "b": 2, "c": 3}


def test_the_current_revision_is_renumbered_when_another_has_its_number() -> None:
    # Two creations from a stale cache gave both 2: the current one moves up.
    found = [Numbered("a", 1), Numbered("b", 2), Numbered("c", 2)]
    assert revision_numbers(found, "c") == {"a": 1, "b": 2, "c": 3}


def test_replica_sets_from_before_numbering_are_numbered_oldest_first() -> None:
    found = [
        Numbered("z", None, T0 + timedelta(seconds=20)),
        Numbered("y", None, T0),
        Numbered("x", None, T0 + timedelta(seconds=10)),
    ]
    assert revision_numbers(found, "z") == {"y": 1, "x": 2, "z": 3}
    # Made in the same second: the current template's last.
    tie = [Numbered("a", None, T0), Numbered("b", None, T0)]
    assert revision_numbers(tie, "a") == {"b": 1, "a": 2}
    # Mixed with numbered ones and no free number below them: after them.
    mixed = [Numbered("a", 1), Numbered("b", None, T0)]
    assert revision_numbers(mixed, "a") == {"a": 3, "b": 2}


def test_an_old_replica_set_that_lost_its_number_does_not_push_the_current_one_up() -> None:
    # A user deleted revision 2's annotation (kubectl annotate rs ... rollout.dev/revision-):
    # it takes 2 back; the current revision stays 4 (it was 6: 2 became 5, then 4 went to 6).
    found = [Numbered("a", 1), Numbered("b", None, T0), Numbered("c", 3), Numbered("d", 4)]
    assert revision_numbers(found, "d") == {"a": 1, "b": 2, "c": 3, "d": 4}
    # Old revisions garbage-collected (5, 7, 8 left): the highest free number, 6.
    gc = [Numbered("e", 5), Numbered("f", None, T0), Numbered("g", 7), Numbered("h", 8)]
    assert revision_numbers(gc, "h") == {"e": 5, "f": 6, "g": 7, "h": 8}
    # Two lost: the two highest free numbers, the oldest the lower one.
    two = [
        Numbered("a", 1),
        Numbered("c", None, T0 + timedelta(seconds=5)),
        Numbered("b", None, T0),
        Numbered("d", 4),
    ]
    assert revision_numbers(two, "d") == {"a": 1, "b": 2, "c": 3, "d": 4}
    # The current revision's ReplicaSet lost it: it is the highest again, not a free one.
    assert revision_numbers([Numbered("a", 1), Numbered("b", None, T0), Numbered("c", 3)], "b") == {
        "a": 1,
        "b": 4,
        "c": 3,
    }
    # A new revision (no ReplicaSet yet) still gets the highest + 1.
    found = [Numbered("a", 1), Numbered("b", None, T0), Numbered("c", 3)]
    assert revision_numbers(found, "new") == {"a": 1, "b": 2, "c": 3, "new": 4}


def test_parse_revision_number() -> None:
    assert parse_revision_number({"rollout.dev/revision": "12"}) == 12
    for bad in ("", "0", "-1", "1.5", "two"):
        assert parse_revision_number({"rollout.dev/revision": bad}) is None
    assert parse_revision_number(None) is None
