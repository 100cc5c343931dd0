"""Build's kept transfer curve and Train's kept head sweep, opened by their links in headless Chromium.

The data folder holds one curve and one sweep measured with tlcore directly (MobileNetV2 at 32 px,
random weights, a few coloured images). Each page must draw its chart (a canvas or svg of non-zero
size), show its sentence uncut (scrollWidth within clientWidth), and Build's "Open Build with this
cut" button must set Build's freezing to the curve's cut.
"""

import os

import pytest
from live_app import streamlit_server, wait_until_idle
from support import coloured_pngs

import tlcore
from tlcore.training.feature_cache import FeatureCache

# the module's data (a transfer curve and a Ray Tune sweep, made before its first test) took 4.3 minutes while two
# other test processes ran on a 2-core Xeon; a slower machine nears the suite's 10 minutes a test, so 15 here
pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]
VIEW = {"width": 1400, "height": 1000}
DRAWN = """(selector) => {
  const boxes = [];
  for (const chart of document.querySelectorAll(selector)) {
    for (const drawn of chart.querySelectorAll('canvas, svg')) {
      const box = drawn.getBoundingClientRect();
      if (box.width > 0 && box.height > 0) boxes.push([box.width, box.height]);
    }
  }
  return boxes;
}"""
CUT = """(text) => {
  for (const element of document.querySelectorAll('[data-testid="stAlertContainer"] p, [data-testid="stButton"] button')) {
    if (element.innerText.includes(text)) return [element.scrollWidth, element.clientWidth];
  }
  return null;
}"""


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A data folder holding one measured curve and one finished sweep (their keys are the links' values)."""
    home = tmp_path_factory.mktemp("curve-sweep")
    data = home / "data"
    dataset = tlcore.load_dataset({"red": coloured_pngs((200, 40, 40), 5, 1), "blue": coloured_pngs((40, 40, 200), 5, 2)})
    cache = FeatureCache(data / "features")
    curve = tlcore.transfer_curve("MobileNetV2", dataset, weights=None, input_size=32, cache=cache,
                                  folder=data / "curves")
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8)
    sweep = tlcore.head_sweep(spec, dataset, tlcore.TrainConfig(epochs=2, batch_size=4, validation_fraction=0.4),
                              budget=tlcore.SweepBudget(trials=3, concurrency=1, max_epochs=2, patience=1),
                              cache=cache, folder=data / "sweeps")
    assert (data / "curves" / f"{curve.key}.json").is_file() and (data / "sweeps" / f"{sweep.key}.json").is_file()
    return home, curve, sweep


@pytest.fixture(scope="module")
def server(kept):
    home, _, _ = kept
    env = {**os.environ, "KERAS_HOME": str(home / "keras"), "TL_DATA_DIR": str(home / "data")}
    with streamlit_server(home / "streamlit.log", env=env) as url:
        yield url


@pytest.fixture
def tab(browser, server):
    context = browser.new_context(viewport=VIEW)
    page = context.new_page()
    page.set_default_timeout(180_000)
    yield page
    context.close()


def opened(tab, url: str, text: str) -> None:
    tab.goto(url)
    tab.get_by_text(text).first.wait_for()
    wait_until_idle(tab)


def uncut(tab, text: str) -> None:
    widths = tab.evaluate(CUT, text)
    assert widths is not None, f"{text!r} is not shown"
    assert widths[0] <= widths[1] + 1, (text, widths)


def charts_drawn(tab, selector: str) -> list:
    tab.wait_for_function(f"() => ({DRAWN})({selector!r}).length > 0", timeout=60_000)
    return tab.evaluate(DRAWN, selector)


def test_a_kept_curve_draws_its_chart_says_where_to_cut_and_opens_build_at_that_cut(tab, server, kept):
    _, curve, _ = kept
    words = curve.recommendation()
    sentence = words[0].upper() + words[1:] + "."
    if curve.train_from:  # Build starts frozen: the button must move it to the cut
        start, button = "", f"Open Build with this cut: train from {curve.train_from}"
    else:  # Build starts training from a layer: the button must freeze the whole base again
        start, button = "&training=Train+from+a+layer", "Open Build with the whole base frozen"
    opened(tab, f"{server}/build?backbone=MobileNetV2&curve={curve.key}{start}", "Where to cut")
    tab.get_by_text(sentence).wait_for()
    assert tab.locator('[data-testid="stAlertContentError"]').count() == 0
    assert len(charts_drawn(tab, '[data-testid="stVegaLiteChart"]')) >= 1
    uncut(tab, sentence)
    uncut(tab, button)
    before = tab.get_by_role("radio", name="All frozen").is_checked()
    assert before == bool(curve.train_from)
    tab.get_by_role("button", name=button).click()
    wait_until_idle(tab)
    from playwright.sync_api import expect

    if curve.train_from:
        expect(tab.get_by_role("radio", name="Train from a layer")).to_be_checked(timeout=60_000)
        expect(tab.get_by_role("combobox", name="Train from layer", exact=True)).to_have_value(curve.train_from)
        assert f"trainable_from={curve.train_from}" in tab.url
    else:
        expect(tab.get_by_role("radio", name="All frozen")).to_be_checked(timeout=60_000)
        assert "training=All" in tab.url


def test_a_kept_sweep_draws_its_parallel_coordinates_and_its_table_on_train(tab, server, kept):
    _, _, sweep = kept
    best = sweep.best
    words = f"Best: trial {best.number} ({best.hidden_units} hidden units"
    opened(tab, f"{server}/train?backbone=MobileNetV2&sweep={sweep.key}", "Sweep the head")
    tab.get_by_text(words).wait_for()
    assert tab.locator('[data-testid="stAlertContentError"]').count() == 0
    chart = tab.locator('[data-testid="stVegaLiteChart"]').filter(has=tab.locator("canvas, svg")).last
    chart.scroll_into_view_if_needed()
    assert len(charts_drawn(tab, '[data-testid="stVegaLiteChart"]')) >= 2  # the class counts and the sweep's
    uncut(tab, words)
    table = tab.locator('[data-testid="stDataFrame"]').last
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 3 * 30  # a header and 3 trials
    assert len(charts_drawn(tab, '[data-testid="stDataFrame"]')) >= 1  # the grid is drawn on a canvas
    cells = [text.strip() for text in table.locator("td").all_inner_texts()]  # the grid's accessible cells
    for state in {trial.state for trial in sweep.trials}:
        assert cells.count(state) == sum(trial.state == state for trial in sweep.trials), cells
    assert sorted(c for c in cells if c in tlcore.OPTIMIZERS) == sorted(t.optimizer for t in sweep.trials), cells
    tab.get_by_role("button", name="Keep the best: train it as a run").wait_for()
