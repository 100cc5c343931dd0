"""What a newcomer sees at 1400x1000 on a server with no internet and no ImageNet weights (issue 22).

The server has an empty Keras cache, no route to the weights (its HTTP proxy is a closed port), one
small trained run and one finished demo in its run store. Headless Chromium (SwiftShader) looks for each
point on screen: no red box, the demo button above the fold, the heatmap label following the table,
"Copy link" copying the address, and no text cut (an element's scrollWidth within its clientWidth).
"""

import os

import pytest
from live_app import SHOTS, streamlit_server, wait_until_idle
from support import coloured_pngs

import tlcore

pytestmark = pytest.mark.browser
VIEW = {"width": 1400, "height": 1000}
ROWS = '[data-testid="stTable"] tbody tr'
CUT = """() => {
  const selectors = ['[data-testid="stButton"] button', '[data-testid="stPageLink"] a',
                     '[data-testid="stCaptionContainer"]', '[data-testid="stMarkdownContainer"] p',
                     '[data-testid="stTable"] td', '[data-testid="stTable"] th', '.tl-share button',
                     '[data-testid="stWidgetLabel"] p', '[data-testid="stMetricLabel"]', '[data-testid="stMetricValue"]',
                     '[data-testid="stSelectbox"] input[role="combobox"]', 'h1', 'h2', 'h3'];
  const cut = [];
  for (const element of document.querySelectorAll(selectors.join(','))) {
    if (element.offsetParent === null) continue;  // not shown
    if (element.scrollWidth > element.clientWidth + 1) cut.push(element.innerText.slice(0, 80));
  }
  return cut;
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """The server's folders: an empty Keras cache, and a run store holding a run and a finished demo."""
    home = tmp_path_factory.mktemp("newcomer")
    store = tlcore.RunStore(home / "data" / "runs")
    dataset = tlcore.load_dataset({"red": coloured_pngs((200, 40, 40), 4, 1), "blue": coloured_pngs((40, 40, 200), 4, 2),
                                   "green": coloured_pngs((40, 200, 40), 4, 3)})
    spec = tlcore.TransferSpec(backbone="MobileNetV2", input_shape=(32, 32, 3), weights=None, hidden_units=8,
                               num_classes=3)
    result = tlcore.train(spec, dataset, tlcore.TrainConfig(epochs=2, batch_size=4, validation_fraction=0.25))
    runs = {}
    for role in ("source", "transfer", "scratch"):  # a finished demo, as the job queue records one
        runs[role] = store.create(result.spec, result.config, dataset.summary(), name=f"demo {role}",
                                  owner="Ann", group="demo-newcomer", role=role)
        store.finish(runs[role], result)
    runs["colours"] = store.create(result.spec, result.config, dataset.summary(), name="colours", owner="Ann")
    store.finish(runs["colours"], result)  # the newest run
    return home, runs


@pytest.fixture(scope="module")
def server(lab):
    home, _ = lab
    closed = "http://127.0.0.1:9"  # nothing listens there: no download can start
    env = {**os.environ, "KERAS_HOME": str(home / "keras"), "TL_DATA_DIR": str(home / "data"),
           "http_proxy": closed, "https_proxy": closed, "HTTP_PROXY": closed, "HTTPS_PROXY": closed,
           "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}
    with streamlit_server(home / "streamlit.log", env=env) as url:
        yield url


@pytest.fixture
def tab(browser, server):
    """A fresh visit: a new browser context (no session, no cookies) at 1400x1000, allowed the clipboard."""
    context = browser.new_context(viewport=VIEW)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.set_default_timeout(120_000)
    yield page
    context.close()


def opened(tab, url: str, text: str) -> None:
    tab.goto(url)
    tab.get_by_text(text).first.wait_for()
    wait_until_idle(tab)


def no_red_box(tab) -> None:
    assert tab.locator('[data-testid="stAlertContentError"]').count() == 0
    body = tab.locator("body").inner_text()
    assert "urlopen" not in body and "Errno" not in body


def combobox(tab, label: str):
    """The text box of the selectbox labelled ``label`` (Streamlit 1.67 draws a selectbox as a combobox)."""
    return tab.get_by_role("combobox", name=label, exact=True)


def heatmap_choice(tab) -> str:
    return combobox(tab, "Heatmap for").input_value()


def table_rows(tab) -> list[list[str]]:
    """The top-5 table's rows, once drawn: Streamlit loads the table's code when a page first shows one,
    so on a busy machine its rows come a moment after the text around them."""
    tab.locator(ROWS).first.wait_for(timeout=60_000)
    rows = tab.locator(ROWS).all()
    return [[cell.strip() for cell in row.locator("th, td").all_inner_texts()] for row in rows]


def test_home_offline_is_calm_with_the_demo_button_above_the_fold(tab, server):
    opened(tab, server, "Five ways to reuse a network")
    no_red_box(tab)
    assert tab.get_by_text("four ways").count() == 0
    button = tab.get_by_role("button", name="Run the develop-a-model demo")
    box = button.bounding_box()
    assert box is not None and box["y"] + box["height"] <= VIEW["height"]  # no scrolling to find it
    tab.get_by_text("The latest demo on this server").wait_for()  # the headline result, for everyone
    assert tab.get_by_text("started by Ann").count() >= 1
    assert tab.get_by_text("cannot download one now").count() == 1  # said once, calmly
    tab.get_by_role("link", name="Look inside").wait_for()  # the cards' links, drawn a moment later
    tab.screenshot(path=str(SHOTS / "newcomer-home.png"))
    assert tab.evaluate(CUT) == []


def test_a_fresh_predict_classifies_with_the_newest_run_and_the_heatmap_label_follows(tab, server, lab):
    _, runs = lab
    opened(tab, f"{server}/predict", "Where the network looks")
    no_red_box(tab)
    assert combobox(tab, "Model").input_value().startswith("Trained run: colours")
    assert tab.get_by_text("Untrained weights").count() == 0  # the sidebar knows Predict uses a trained run
    rows = table_rows(tab)
    assert len(rows) == 3 and {row[1] for row in rows} == {"red", "green", "blue"}
    assert heatmap_choice(tab).startswith(f"1. {rows[0][1]} (")
    combobox(tab, "Heatmap for").click()
    tab.get_by_role("option").nth(2).click()  # the third class
    wait_until_idle(tab)
    assert heatmap_choice(tab).startswith(f"3. {rows[2][1]} (")
    tab.get_by_text(f"Heat for {rows[2][1]} over").wait_for()

    heatmap = tab.locator('[data-testid="stImage"] img').last  # the overlay under "Where the network looks"
    before = heatmap.get_attribute("src")
    combobox(tab, "...or pick a sample").click()
    tab.get_by_role("option", name="rocket").click()
    tab.get_by_text("What the network sees of the rocket sample").wait_for()
    wait_until_idle(tab)
    tab.wait_for_function("([selector, src]) => { const shown = [...document.querySelectorAll(selector)].pop(); "
                          "return shown && shown.complete && shown.getAttribute('src') !== src; }",
                          arg=['[data-testid="stImage"] img', before], timeout=60_000)  # the new image's heatmap
    rows = table_rows(tab)
    assert {row[1] for row in rows} == {"red", "green", "blue"}
    choice = heatmap_choice(tab)
    assert choice.startswith(f"1. {rows[0][1]} (")  # the new image's own top-1, with its rank
    assert choice.split(" (")[0][3:] in {row[1] for row in rows}
    tab.get_by_text(f"Heat for {rows[0][1]} over").wait_for()
    assert tab.get_by_text("Heat for ").count() == 1
    tab.screenshot(path=str(SHOTS / "newcomer-predict.png"))
    assert tab.evaluate(CUT) == []


def test_a_link_asking_for_imagenet_gets_one_calm_notice(tab, server):
    opened(tab, f"{server}/predict?backbone=MobileNetV2&weights=ImageNet&predict_model=imagenet",
           "cannot download them now")
    no_red_box(tab)
    assert tab.get_by_role("button", name="Classify with the newest trained run").is_visible()
    assert tab.get_by_role("button", name="Explore with random weights").is_visible()
    tab.get_by_role("button", name="Classify with the newest trained run").click()
    tab.get_by_text("Where the network looks", exact=True).wait_for()  # not the spinner "Working out where ..."
    wait_until_idle(tab)
    no_red_box(tab)
    assert {row[1] for row in table_rows(tab)} == {"red", "green", "blue"}
    assert tab.evaluate(CUT) == []


@pytest.mark.parametrize("path, wait_for", [
    ("/predict", "Where the network looks"),
    ("/features?backbone=MobileNetV2", "Feature vectors"),
    ("/layers?backbone=MobileNetV2", "What a layer sees"),
    ("/build?backbone=MobileNetV2", "Build a transfer model"),
    ("/runs?run={colours}", "Runs"),
    ("/?demo=demo-newcomer", "This demo"),
])
def test_copy_link_copies_the_views_address(tab, server, lab, path, wait_for):
    _, runs = lab
    opened(tab, server + path.format(**runs), wait_for)
    button = tab.locator(".tl-share button")
    button.first.wait_for()  # drawn with the view's last element, after the text waited for
    assert button.count() == 1 and button.is_visible() and button.inner_text().strip().endswith("Copy link")
    button.click()
    tab.get_by_text("Link copied").wait_for()
    copied = tab.evaluate("navigator.clipboard.readText()")
    assert copied == tab.url and copied.startswith(server)
    if "?" in path:  # the link keeps the view's choices
        assert path.split("?")[1].format(**runs) in copied
