"""What a newcomer sees on Home, Train and Runs at 1400x1000 in Chromium: nothing cut, legends with line
samples, and a stopped twin called what it is.

Text is "cut" when an element's content is wider than its box (``scrollWidth > clientWidth``): Streamlit
ends such a label with an ellipsis. The runs are written straight into the server's run store: one small
run trained here (it has a model, so the run page offers its downloads and exports), and a transfer run
with its twin from scratch that was stopped at epoch 1 of 2.
"""

import os
import re

import numpy as np
import pandas as pd
import pytest
from live_app import SHOTS, streamlit_server, wait_until_idle

pytestmark = pytest.mark.browser
CHART = '[data-testid="stVegaLiteChart"]'
ALERT = '[data-testid="stAlertContainer"]'
METRIC = '[data-testid="stMetric"]'
LEGEND_SCRATCH = re.compile(r"^scratch$")
"""The legend label of the twin's curves in the transfer-against-scratch chart (the overlay's run titles only
contain "from scratch")."""
GROUP = "newcomer-pair"
WAIT = 60_000
"""Milliseconds to wait for a part of the screen drawn after the text a test first waits for."""

CUT = """(root) => {
  const cut = [];
  for (const el of [root, ...root.querySelectorAll('*')]) {
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) cut.push((el.innerText || '').trim());
  }
  return cut;
}"""
"""The text of every element inside ``root`` (itself included) whose content is wider than its box."""


def _history(accuracies):
    n = len(accuracies)
    return pd.DataFrame({"phase": ["train"] * n, "loss": np.linspace(1.4, 1.0, n), "accuracy": accuracies,
                         "val_loss": np.linspace(1.5, 1.2, n), "val_accuracy": accuracies})


@pytest.fixture(scope="module")
def runs():
    """A trained run with a model, and a transfer/scratch pair whose scratch twin stopped at epoch 1 of 2."""
    import tlcore

    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")  # the server's (same TL_DATA_DIR)
    spec = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, trainable_from="all",
                               hidden_units=0)
    config = tlcore.TrainConfig(epochs=1, batch_size=8, validation_fraction=0.5)
    sample = tlcore.sample_dataset(per_class=4, size=32, seed=5)
    ids = {"source": store.create(spec, config, sample.summary(), group=GROUP, role="source")}
    store.finish(ids["source"], tlcore.train(spec, sample, config))

    target = tlcore.demo_target_dataset(per_class=4, size=32, seed=5)
    names = tuple(target.class_names)
    pair = tlcore.TrainConfig(epochs=2, batch_size=8, validation_fraction=0.5)
    for role, accuracies, stopped in (("transfer", [0.5, 0.75], False), ("scratch", [0.25], True)):
        ids[role] = store.create(spec, pair, target.summary(), group=GROUP, role=role)
        history = _history(accuracies)
        confusion = tuple(tuple(int(i == j) for j in range(4)) for i in range(4))
        result = tlcore.RunResult(names, accuracies[-1], 1.0, confusion, (1.0,) * 4, (1.0,) * 4, stopped=stopped,
                                  seconds=2.0)
        store.record_result(ids[role], history, result)
    return ids


@pytest.fixture(scope="module")
def server(cached_mobilenet, tmp_path_factory, ray_address, runs):
    env = {**os.environ, "TL_RAY_ADDRESS": ray_address}
    with streamlit_server(tmp_path_factory.mktemp("server") / "streamlit.log", env=env) as url:
        yield url


@pytest.fixture(scope="module")
def page(server, browser):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(120_000)
    yield tab
    tab.close()


def open_and_see(tab, url: str, text: str) -> None:
    tab.goto(url)
    wait_until_idle(tab)
    tab.get_by_text(text).first.wait_for()


def cut_text(locator) -> list[str]:
    """The texts cut inside each element ``locator`` finds."""
    return [text for i in range(locator.count()) for text in locator.nth(i).evaluate(CUT)]


def metrics(tab) -> dict[str, str]:
    """Every metric on the screen: its label's words to its value's."""
    return {metric.locator('[data-testid="stMetricLabel"] p').inner_text().strip():
            metric.locator('[data-testid="stMetricValue"]').inner_text().strip()
            for metric in tab.locator(METRIC).all()}


def legend_symbols(chart) -> list[str]:
    """The SVG paths of the chart's legend samples (Vega draws them as ``role-legend-symbol`` marks)."""
    chart.locator("svg .role-legend-symbol path").first.wait_for(state="attached", timeout=30_000)
    return chart.locator("svg .role-legend-symbol path").evaluate_all("els => els.map(e => e.getAttribute('d'))")


def svg_texts(chart, role: str) -> list[str]:
    """The words of a chart's SVG texts of one Vega role ("role-legend-label", "role-axis-label")."""
    return chart.locator(f"svg .{role} text").evaluate_all("els => els.map(e => e.textContent)")


def is_line_sample(path: str) -> bool:
    """A legend sample drawn as a short horizontal stroke ("M-8.66,0L8.66,0"), not a dot (arcs) or a square."""
    return bool(re.fullmatch(r"M-?[\d.]+,0[HL]-?[\d.]+(,0)?", path.replace(" ", "")))


def test_export_and_action_buttons_show_their_whole_labels(server, page, runs):
    open_and_see(page, f"{server}/runs?run={runs['source']}", "Export for deployment")
    page.get_by_text("Export for deployment").first.click()
    buttons = page.locator('[data-testid="stDownloadButton"], [data-testid="stButton"]')
    page.get_by_text("TFLite int8 (dynamic-range quantized)").first.wait_for()
    labels = [buttons.nth(i).inner_text() for i in range(buttons.count())]
    for wanted in ("Keras (.keras, no optimizer state)", "TFLite int8 (dynamic-range quantized)",
                   "SavedModel (TF Serving)", "Reuse its base for a new task", "Download history (CSV)"):
        assert any(wanted in label for label in labels), (wanted, labels)
    assert cut_text(buttons) == []
    page.get_by_text("SavedModel (TF Serving)").first.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "run-exports-whole-labels.png")


def test_training_curves_have_line_samples_in_their_legend(server, page, runs):
    open_and_see(page, f"{server}/runs?run={runs['source']}", "Validation accuracy")
    curves = page.locator(CHART).filter(  # the run's own curves, once Vega has drawn their legend
        has=page.locator("svg .role-legend-label text", has_text="validation")).first
    curves.wait_for(timeout=WAIT)
    paths = legend_symbols(curves)
    assert len(paths) >= 2 and all(is_line_sample(path) for path in paths), paths
    labels = svg_texts(curves, "role-legend-label")
    assert {"validation", "training"} <= set(labels)


def test_a_stopped_twin_is_called_so_and_compared_at_the_last_epoch_both_reached(server, page, runs):
    from playwright.sync_api import expect

    open_and_see(page, f"{server}/runs?run={runs['transfer']}", "Transfer against scratch")
    # The overlay at the top of Runs says the same sentence in a caption; this is the run's own warning box,
    # drawn further down after its curves, so each check waits for what it looks at.
    warning = page.locator(ALERT).filter(
        has_text="The run from scratch stopped early: Stop was pressed after epoch 1 of 2.")
    expect(warning).to_be_visible(timeout=WAIT)
    expect(warning).to_contain_text("not a fair comparison", timeout=WAIT)
    at_epoch = {"Transfer at epoch 1": "50.0%", "From scratch at epoch 1": "25.0%",
                "Gap at epoch 1": "+25.0 points"}  # 50% against 25% at epoch 1, not 75% at epoch 2
    for label in at_epoch:
        expect(page.locator(METRIC).filter(has_text=label)).to_be_visible(timeout=WAIT)
    shown = metrics(page)
    assert {label: shown.get(label) for label in at_epoch} == at_epoch, shown
    assert "Gap" not in shown and "Transfer" not in shown  # no gap of final accuracies is shown as fair
    versus = page.locator(CHART).filter(has=page.locator("svg .role-legend-label text", has_text=LEGEND_SCRATCH))
    paths = legend_symbols(versus.first)
    assert {"transfer", "scratch"} <= set(svg_texts(versus.first, "role-legend-label"))
    assert paths and all(is_line_sample(path) for path in paths), paths
    strokes = versus.first.locator("svg .role-legend-symbol path").evaluate_all(
        "els => els.map(e => getComputedStyle(e).stroke || e.getAttribute('stroke'))")
    assert strokes and not [s for s in strokes if s in ("transparent", "none", "rgba(0, 0, 0, 0)")], strokes
    warning.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "run-stopped-twin.png")


def test_the_compare_overlay_starts_on_the_pair_with_whole_titles_and_line_samples(server, page, runs):
    from playwright.sync_api import expect

    open_and_see(page, f"{server}/runs", "Runs to overlay")
    chips = page.locator('[data-testid="stMultiSelect"] span[data-tag] > span[title]')
    chosen = chips.all_inner_texts()
    assert len(chosen) == 2 and any(", reusing a base ·" in c for c in chosen) and any(", from scratch ·" in c
                                                                                      for c in chosen), chosen
    overlay = page.locator(CHART).first
    legend = overlay.locator("svg .role-legend-label text")
    expect(legend).to_have_count(2, timeout=WAIT)  # Vega draws the legend after the page is idle
    labels = svg_texts(overlay, "role-legend-label")
    assert len(labels) == 2 and not any(label.endswith("…") for label in labels), labels
    assert set(labels) == set(chosen)  # the legend names the runs as the choice does
    assert cut_text(chips) == []
    assert all(is_line_sample(path) for path in legend_symbols(overlay))
    assert page.get_by_text("stopped early").first.is_visible()  # the pair's words under the overlay


def test_the_demo_links_on_home_are_whole_and_the_stopped_twin_is_said(server, page, runs):
    from playwright.sync_api import expect

    open_and_see(page, f"{server}/?demo={GROUP}", "Transfer against scratch")
    links = page.locator('[data-testid="stPageLink"]').filter(has_text=re.compile("Source|Target"))
    expect(links).to_have_count(3, timeout=WAIT)  # drawn one a line under the comparison, after its chart
    labels = links.all_inner_texts()
    for role in ("Source: the sample shapes, whole base trained", "Target, reusing the source's trained base",
                 "Target, from scratch"):
        assert sum(role in label for label in labels) == 1, (role, labels)
    assert cut_text(links) == []
    expect(page.locator(ALERT).filter(has_text="The run from scratch stopped early")).to_be_visible(timeout=WAIT)
    links.first.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "home-demo-links.png")


def test_the_class_count_chart_names_do_not_overlap(server, page):
    open_and_see(page, f"{server}/train", "images in 4 classes")
    chart = page.locator(CHART).first
    chart.locator("svg .role-axis-label text").first.wait_for(state="attached", timeout=30_000)
    boxes = chart.locator("svg .role-axis-label text").evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom, e.textContent]; })")
    names = sorted((top, bottom) for top, bottom, text in boxes if not text.strip().isdigit())
    assert len(names) == 4
    assert all(below[0] >= above[1] - 0.5 for above, below in zip(names, names[1:])), names
