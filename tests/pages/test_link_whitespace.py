"""AppTest: a link notice shows the value received, whitespace included, for every kind of link value.

``?preset=128%20`` used to read "`preset=128` in this link was not used: ... one of 224, 128, ...": the notice
collapsed the space, so the value shown was an accepted one. A value whose characters would not all show is
now quoted, Python style; a value that shows as it is keeps its plain look.
"""

import pytest
from markdown_it import MarkdownIt
from support import RANDOM, open_link


def notices(at) -> str:
    return "\n".join(toast.value for toast in at.toast)


@pytest.mark.parametrize("key, raw, shown", [
    ("preset", "128 ", "`preset='128 '`"),
    ("preset", " 128", "`preset=' 128'`"),
    ("build_pooling", "max\n", r"`build_pooling='max\n'`"),
    ("build_pooling", "max\t", r"`build_pooling='max\t'`"),
    ("build_pooling", "max\u00a0", r"`build_pooling='max\xa0'`"),
    ("training", "All  frozen", r"`training='All \x20frozen'`"),  # a browser shows two spaces as one
    ("curve", "ab" * 16 + " ", "`curve='" + "ab" * 16 + " '`"),  # a link value the page judges itself
])
def test_a_value_that_differs_by_whitespace_is_shown_with_it(key, raw, shown):
    at = open_link("../pages/build.py", backbone="VGG16", weights=RANDOM, **{key: raw})
    assert not at.exception
    message = notices(at)
    assert f"{shown} in this link was not used:** `{key}` must be" in message, message


def test_the_quoted_value_reaches_the_screen_as_written():
    at = open_link("../pages/build.py", backbone="VGG16", weights=RANDOM, preset="128 ", training="All  frozen")
    html = MarkdownIt("commonmark").render(notices(at))
    assert "<code>preset='128 '</code>" in html
    assert r"<code>training='All \x20frozen'</code>" in html


def test_a_value_that_shows_as_it_is_keeps_its_plain_look():
    at = open_link("../pages/home.py", backbone="AlexNet 2", weights=RANDOM)
    assert "`backbone=AlexNet 2` in this link was not used" in notices(at)

