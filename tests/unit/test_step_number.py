"""The one step numbering: 1-based, of the step being executed; n/n once all are done."""

from rollout.domain.steps import step_number


def test_step_number_is_one_based_while_running() -> None:
    assert step_number(0, 5) == "1/5"
    assert step_number(4, 5) == "5/5"


def test_step_number_after_the_last_step_is_n_of_n() -> None:
    assert step_number(5, 5) == "5/5"
    assert step_number(7, 6) == "6/6"


def test_step_number_without_a_step() -> None:
    assert step_number(None, 5) == "-"
    assert step_number(0, 0) == "-"
