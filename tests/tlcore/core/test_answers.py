"""Answers by request id: the first answer again for the same id, the oldest forgotten past the bound."""

from tlcore.core.answers import KEPT_ANSWERS, Answers


def test_the_same_request_gets_the_first_answer_and_the_oldest_are_forgotten():
    answers = Answers()
    answers.keep(None, "nothing kept for no request")
    assert answers.get(None) is None
    for i in range(KEPT_ANSWERS + 1):
        answers.keep(f"click-{i}", i)
    assert answers.get("click-0") is None  # the oldest went
    assert answers.get("click-1") == 1 and answers.get(f"click-{KEPT_ANSWERS}") == KEPT_ANSWERS
