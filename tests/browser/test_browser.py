"""The app in a real browser: headless Debian Chromium driven by Playwright.

The server runs on a loopback port with the test's own Keras cache (untrained
MobileNetV2 weights written where Keras keeps ImageNet files). Chromium draws with
software GL (see live_app.CHROMIUM_FLAGS), and every table and chart is checked in
what a person sees: the element's screenshot, decoded, must show rows, text and the
expected colours, and charts must hold their marks. Screenshots go to ``screenshots/``
(printed at the end of the run).
"""

import os
import time

import numpy as np
import pytest
from live_app import SHOTS, WEBGL_RENDERER, picture, streamlit_server, wait_until_idle, what_the_page_shows
from support import image_bytes

pytestmark = pytest.mark.browser
ROW = 35  # st.dataframe's header and row height, in CSS pixels (device scale 1)
GRID, CHART = '[data-testid="stDataFrame"]', '[data-testid="stVegaLiteChart"]'


@pytest.fixture(scope="module")
def server(cached_mobilenet, tmp_path_factory, ray_address):
    env = {**os.environ, "TL_RAY_ADDRESS": ray_address}  # train on the session's Ray, not a second one
    with streamlit_server(tmp_path_factory.mktemp("server") / "streamlit.log", env=env) as url:
        yield url


@pytest.fixture(scope="module")
def page(server, browser):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(120_000)
    yield tab
    tab.close()


# What a picture shows -------------------------------------------------------------------------

def row_darkness(grid_picture, columns=(8, 150)) -> list[int]:
    """The darkest grey level in each row's first cell, header excluded (text is dark, none is white)."""
    grey = np.asarray(grid_picture.convert("L"))
    rows = (grey.shape[0] - ROW) // ROW
    return [int(grey[ROW + i * ROW + 5: ROW + (i + 1) * ROW - 5, columns[0]:columns[1]].min())
            for i in range(rows)]


def pixels_of(image, rgb, tolerance=3) -> int:
    """How many pixels are within ``tolerance`` of the colour ``rgb``."""
    difference = np.abs(np.asarray(image, dtype=int) - np.array(rgb)).max(axis=2)
    return int((difference <= tolerance).sum())


def coloured(image) -> int:
    """How many pixels are clearly coloured (not white, grey or black): marks, not axes or text."""
    pixels = np.asarray(image, dtype=int)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


def marks(chart, kind: str, *, wait: bool = True) -> int:
    """How many marks of ``kind`` ("rect", "line", "symbol", "text") the Vega chart's SVG holds.

    With ``wait``, first waits for one to be drawn (Vega draws after its element appears).
    """
    drawn = chart.locator(f"svg g.mark-{kind}.role-mark > *")
    if wait:
        drawn.first.wait_for(state="attached", timeout=30_000)  # a flat line has no height
    return drawn.count()


def chart_with(tab, kind: str, count: int, *, timeout: float = 30.0):
    """The first chart on ``tab`` that has drawn ``count`` marks of ``kind``, waiting for Vega to draw it (the
    chart's element appears before its marks do: counting at once failed a CI run)."""
    deadline = time.monotonic() + timeout
    while True:
        charts = tab.locator(CHART)
        found = [marks(charts.nth(i), kind, wait=False) for i in range(charts.count())]
        if count in found:
            return charts.nth(found.index(count))
        if time.monotonic() > deadline:
            raise AssertionError(f"No chart drew {count} {kind} marks in {timeout:.0f} s. Received: {found}")
        tab.wait_for_timeout(200)


def open_and_see(tab, url: str, text: str) -> None:
    """Open ``url`` and wait for ``text`` once the app is idle."""
    tab.goto(url)
    wait_until_idle(tab)
    tab.get_by_text(text).first.wait_for()


# Tests -------------------------------------------------------------------------------------------

def test_chromium_draws_with_software_gl(page, server):
    page.goto(server)
    wait_until_idle(page)
    assert "SwiftShader" in (page.evaluate(WEBGL_RENDERER) or "")


def test_predict_an_uploaded_image(server, page):
    page.goto(f"{server}/predict?backbone=MobileNetV2&weights=ImageNet")
    wait_until_idle(page)
    page.locator('[data-testid="stTable"]').wait_for()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "made-up.png", "mimeType": "image/png", "buffer": image_bytes((120, 90), seed=7)}]
    )
    page.get_by_text("What the network sees of made-up.png").wait_for()
    wait_until_idle(page)
    table = page.locator('[data-testid="stTable"]')
    assert table.locator("tbody tr").count() == 5
    assert table.locator("thead").inner_text().split() == ["rank", "label", "class_id", "probability"]
    assert "%" in table.locator("tbody tr").first.inner_text()
    drawn_table = picture(table)
    assert np.asarray(drawn_table.convert("L")).min() < 90  # its text is on screen, dark on white
    chart = page.locator(CHART).first
    assert marks(chart, "rect") == 5  # one bar per class
    drawn_chart = picture(chart)
    drawn_chart.save(SHOTS / "predict-chart.png")
    assert (np.asarray(drawn_chart.convert("L")) < 170).sum() > 300  # class names and axis drawn
    assert coloured(drawn_chart) >= 5 * 8  # five bars (hairlines: untrained weights give ~0.1%)
    assert page.get_by_text("Prediction took").is_visible()
    page.screenshot(path=SHOTS / "predict.png")


def test_bad_upload_shows_a_message_not_a_traceback(server, page):
    page.goto(f"{server}/predict?backbone=MobileNetV2&weights=ImageNet")
    wait_until_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"plain text"}]
    )
    page.get_by_text("That file cannot be used.").wait_for()
    assert page.locator('[data-testid="stException"]').count() == 0


def test_layers_tables_are_drawn_with_every_row_and_the_removed_layers_in_red(server, page):
    open_and_see(page, f"{server}/layers?backbone=VGG16", "138,357,544")
    grids = page.locator(GRID)
    grids.nth(1).wait_for()
    assert grids.count() == 2
    layers = picture(grids.nth(0))
    darkness = row_darkness(layers)
    assert len(darkness) >= 10 and max(darkness) < 100  # every visible row has its name drawn
    assert pixels_of(layers, (255, 255, 255)) > layers.width * layers.height // 2  # on white cells
    assert grids.nth(0).locator("td", has_text="block1_conv1").count() == 1
    page.screenshot(path=SHOTS / "layers.png")

    comparison = grids.nth(1)
    comparison.scroll_into_view_if_needed()
    comparison.hover()
    page.mouse.wheel(0, 2000)  # the removed layers (flatten, fc1, fc2, predictions) are last
    REMOVED = (0xFD, 0xE2, 0xE1)  # pages/layers.py's colour for a removed layer's row
    for _ in range(40):  # the grid redraws on the next frames
        bottom = picture(comparison)
        if pixels_of(bottom, REMOVED):
            break
        page.wait_for_timeout(250)
    pink_rows = pixels_of(bottom, REMOVED) / (bottom.width * (ROW - 1))
    assert comparison.locator("td", has_text="predictions").count() == 1  # scrolled to the end
    assert 3.0 < pink_rows <= 4.5  # four rows on the removed colour, drawn across the grid
    bottom.save(SHOTS / "layers-removed.png")


def test_build_page_explains_a_too_small_input_and_greys_the_frozen_layers(server, page):
    open_and_see(page, f"{server}/build?backbone=VGG16&preset=custom&custom_size=16",
                 "at least 32x32 for VGG16")
    page.screenshot(path=SHOTS / "build-too-small.png")
    open_and_see(page, f"{server}/build?backbone=VGG16&preset=128&training=Train+from+a+layer"
                 "&trainable_from=block5_conv1", "4x4x512")
    grid = page.locator(GRID).first
    grid.wait_for()
    layers = picture(grid)
    darkness = row_darkness(layers)
    # Row 1 is the new input ("image", trainable: dark text); the pretrained blocks before
    # block5_conv1 are frozen and drawn in grey (#8a8a8a).
    assert darkness[0] < 90
    assert all(110 < level < 170 for level in darkness[1:8]), darkness
    assert grid.locator("td", has_text="block1_conv1").count() == 1
    grid.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "build.png")


def test_a_bad_value_in_a_link_is_named_and_the_page_still_works(server, page):
    open_and_see(page, f"{server}/build?backbone=VGG16&preset=128&dropout=5", "4x4x512")
    toast = page.locator('[data-testid="stToast"]')
    toast.first.wait_for()
    assert "dropout=5 in this link was not used" in toast.first.inner_text()
    assert "from 0.0 to 0.9" in toast.first.inner_text()
    assert page.locator('[data-testid="stSliderThumbValue"]').inner_text() == "0.20"  # the default
    assert "dropout=0.2" in page.url
    page.screenshot(path=SHOTS / "bad-link.png")


@pytest.mark.timeout(900)  # the run alone may take 10 minutes on a slow, busy machine (below)
def test_train_the_sample_dataset_for_two_epochs(server, page):
    page.goto(f"{server}/train?backbone=MobileNetV2&weights=Random+%28untrained%29")
    wait_until_idle(page)
    counts = page.locator(CHART).first
    assert marks(counts, "rect") == 4  # one bar per class of the sample dataset
    assert coloured(picture(counts)) > 2000  # the bars are drawn, in colour
    epochs = page.get_by_label("Epochs", exact=True)
    epochs.fill("2")
    epochs.press("Enter")
    wait_until_idle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    failed = page.get_by_text("Training did not finish")
    # the worker imports TensorFlow, builds the model and trains: 1.5 min on a quiet 2-core Xeon, 4 min while two
    # other test processes ran, and a slower machine under the suite's load takes longer still
    page.get_by_text("Confusion matrix").or_(failed).first.wait_for(timeout=600_000)
    assert not failed.count(), what_the_page_shows(page)
    wait_until_idle(page)
    charts = page.locator(CHART)
    assert charts.count() >= 3
    curves = charts.nth(1)
    assert marks(curves, "line") >= 2 and marks(curves, "symbol") >= 4  # 2 splits x 2 epochs
    assert coloured(picture(curves)) > 300
    heatmap = chart_with(page, "text", 16)
    assert marks(heatmap, "rect") == 16  # 4 true x 4 predicted classes
    assert coloured(picture(heatmap)) > 2000
    page.get_by_text("Validation accuracy", exact=True).wait_for()
    charts.nth(1).scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "train.png")

    open_and_see(page, f"{server}/runs", "Open a run")
    runs = page.locator(GRID).first
    runs.wait_for()
    assert max(row_darkness(picture(runs))[:1]) < 100  # the run's row is drawn
    compared = page.locator(CHART).first
    assert marks(compared, "line") >= 1 and coloured(picture(compared)) > 100
    page.screenshot(path=SHOTS / "runs.png")


def test_a_fresh_servers_first_request_can_be_a_deep_link(cached_mobilenet, browser, tmp_path):
    """The very first request of a new server process is a link to a page with a choice in it."""
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    tab.set_default_timeout(120_000)
    with streamlit_server(tmp_path / "streamlit.log") as url:
        tab.goto(f"{url}/layers?backbone=MobileNetV2")
        wait_until_idle(tab)
        tab.get_by_text("3,538,984").first.wait_for()  # MobileNetV2's parameters, with its top
        tab.locator(GRID).first.wait_for()
        sidebar = tab.locator('[data-testid="stSidebar"]')
        for section in ("Learn", "Reuse a pretrained network", "Train on your images"):
            assert sidebar.get_by_text(section, exact=True).is_visible()
        assert sidebar.get_by_role("link", name="Layers").is_visible()
        assert sidebar.get_by_text("streamlit_app", exact=True).count() == 0  # no file names as pages
        assert sidebar.get_by_role("combobox", name="Backbone").input_value() == "MobileNetV2"
        assert "backbone=MobileNetV2" in tab.url
        assert max(row_darkness(picture(tab.locator(GRID).first))) < 100
        tab.screenshot(path=SHOTS / "fresh-deep-link.png")
    tab.close()


def test_features_maps_the_sample_dataset_with_each_image_on_hover(server, page):
    """Features' dataset map: one point per image in its class's colour, and the image itself on hover."""
    page.goto(f"{server}/features?backbone=MobileNetV2&weights=Random+%28untrained%29"
              "&features_map=dataset&map_images=40")
    wait_until_idle(page)
    page.get_by_role("button", name="Place the images").click()  # a link opens the view; a click places them
    wait_until_idle(page)
    page.get_by_text("40 of 256 images").first.wait_for()
    chart = page.locator(CHART).first
    assert marks(chart, "symbol") == 40  # one point per image placed
    drawn = picture(chart)
    # tableau10's first four hues at the points' opacity 0.85 on white: circle, square, triangle, stripes
    for rgb in ((103, 140, 181), (246, 151, 59), (232, 112, 111), (135, 194, 190)):
        assert pixels_of(drawn, rgb, tolerance=6) > 150, rgb  # each class's points are drawn (10 each)
    point = chart.locator("svg g.mark-symbol.role-mark > *").first.bounding_box()
    page.mouse.move(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)
    shown = page.locator("#vg-tooltip-element img")
    shown.wait_for(state="visible", timeout=10_000)
    assert shown.evaluate("img => img.complete && img.naturalWidth") == 64  # the 64 px thumbnail, decoded
    thumbnail = picture(shown, settle=5)
    assert np.asarray(thumbnail, dtype=float).std() > 10 and len(thumbnail.getcolors(1 << 24)) > 300  # a picture
    page.screenshot(path=SHOTS / "features-dataset-map.png")


def test_predict_draws_the_heatmap_of_an_uploaded_square_detector(server, page, tmp_path):
    """A model that spots a white square (inputs scaled as MobileNetV2's are) is uploaded with a photo
    holding one in its top-left corner: the heatmap is drawn, red in that corner."""
    import io

    from PIL import Image

    square_detector().save(tmp_path / "squares.keras")
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 90, (120, 120, 3)).astype(np.uint8)
    photo[12:36, 15:39] = 255  # the square, in the top-left quadrant
    encoded = io.BytesIO()
    Image.fromarray(photo).save(encoded, "PNG")

    page.goto(f"{server}/predict?backbone=MobileNetV2&weights=ImageNet&predict_model=uploaded")
    wait_until_idle(page)
    page.get_by_label("Its class names, comma-separated (optional)", exact=True).fill("plain, square")
    page.keyboard.press("Enter")
    wait_until_idle(page)
    uploads = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploads.nth(0).set_input_files(files=[{"name": "squares.keras", "mimeType": "application/octet-stream",
                                           "buffer": (tmp_path / "squares.keras").read_bytes()}])
    # the model answers the sample first, in the upload's worker: a new Ray actor importing TensorFlow, slow
    # while the machine is busy. The photo goes in once that answer is on screen, as a user would: in one CI
    # run under load, the photo set right after the model never showed (the cause is not known; not seen alone)
    page.get_by_text("Top 2").wait_for(timeout=360_000)
    wait_until_idle(page)
    uploads.nth(1).set_input_files(files=[{"name": "square.png", "mimeType": "image/png",
                                           "buffer": encoded.getvalue()}])
    page.get_by_text("What the network sees of square.png").wait_for(timeout=360_000)
    shown = page.locator('[data-testid="stImage"]').filter(has_text="Heat for square")
    shown.wait_for(timeout=120_000)  # the heatmap's pass runs in the upload's worker, after the top-5 is drawn
    wait_until_idle(page)
    assert page.get_by_text("Where the network looks", exact=True).is_visible()
    drawn = picture(shown.locator("img"))
    drawn.save(SHOTS / "predict-heatmap.png")
    pixels = np.asarray(drawn, dtype=int)
    red = (pixels[..., 0] > 120) & (pixels[..., 0] > pixels[..., 1] + 50) & (pixels[..., 0] > pixels[..., 2] + 50)
    half_h, half_w = red.shape[0] // 2, red.shape[1] // 2
    corner = int(red[:half_h, :half_w].sum())
    assert drawn.width >= 200 and corner > 400  # a large enough picture, hot where the square is
    assert corner > 3 * (int(red.sum()) - corner)  # and hardly anywhere else
    assert coloured(drawn) > 400 and len(drawn.getcolors(1 << 24)) > 300  # a drawn picture, not a blank box
    assert "evidence for **square**" not in page.inner_text("body")  # Markdown drawn, not shown raw
    assert page.get_by_text("read at layer").first.is_visible()
    shown.scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "predict-heatmap-page.png")


def square_detector():
    """A functional model (Predict cannot take an uploaded Sequential one yet) whose weights are set, not
    trained, so it is the same on every machine: its first convolution fires where a 3x3 patch is nearly
    white (MobileNetV2's scaling: white is 1, the photo's dark noise -1 to -0.3), its second sums that,
    and a large maximum means "square". Its evidence is exactly where the square is."""
    import keras

    inputs = keras.Input((40, 40, 3))
    bright = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="bright")(inputs)
    square = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="square_map")(
        keras.layers.MaxPooling2D()(bright))
    decide = keras.layers.Dense(2, activation="softmax", name="decide")
    model = keras.Model(inputs, decide(keras.layers.GlobalMaxPooling2D()(square)))
    kernel, bias = np.zeros((3, 3, 3, 8), np.float32), np.zeros(8, np.float32)
    kernel[..., 0], bias[0] = 1 / 27, -0.8  # channel 0: the patch's mean brightness above 0.8
    model.get_layer("bright").set_weights([kernel, bias])
    kernel = np.zeros((3, 3, 8, 16), np.float32)
    kernel[:, :, 0, 0] = 1 / 9
    model.get_layer("square_map").set_weights([kernel, np.zeros(16, np.float32)])
    weights = np.zeros((16, 2), np.float32)
    weights[0] = -20, 20  # plain, square
    decide.set_weights([weights, np.array([1, -1], np.float32)])
    return model


def test_layers_and_build_draw_the_network_diagram_and_a_layers_strongest_channels(server, page):
    diagram_css, frozen, head, top, cut = ('[data-testid="stGraphVizChart"]', (0xC9, 0xCE, 0xD6),
                                           (0xD7, 0xF0, 0xDC), (0xFD, 0xE2, 0xE1), (0xC6, 0x28, 0x28))
    open_and_see(page, f"{server}/layers?backbone=MobileNetV2&weights=ImageNet", "What a layer sees")
    diagram = page.locator(diagram_css).first
    diagram.locator("svg g.node").first.wait_for()
    assert diagram.locator("svg g.node").count() == 24  # input, 20 blocks, the cut, the ImageNet top's 2 layers
    assert diagram.locator("svg g.cluster").count() == 1  # the top, framed
    assert diagram.locator("svg g.node", has_text="block_16").count() == 1
    drawn = picture(diagram)
    drawn.save(SHOTS / "layers-diagram.png")
    assert drawn.width > 600 and (np.asarray(drawn.convert("L")) < 100).sum() > 3000  # 20 boxes' text, legible
    assert pixels_of(drawn, top) > 2000  # the two layers include_top=False removes, pink
    assert pixels_of(drawn, cut, tolerance=40) > 100  # the red dashed cut
    assert pixels_of(drawn, frozen) < 200  # nothing is frozen on Layers (a grey box would be thousands)

    grid = page.locator('[data-testid="stImage"]').filter(has_text="strongest")
    grid.locator("img").wait_for()
    drawn_grid = picture(grid.locator("img"))
    drawn_grid.save(SHOTS / "layers-feature-grid.png")
    pixels = np.asarray(drawn_grid, dtype=int)
    assert drawn_grid.width > 300 and coloured(drawn_grid) > 0.6 * drawn_grid.width * drawn_grid.height  # viridis
    assert len(drawn_grid.getcolors(1 << 24)) > 500  # maps with detail, not flat tiles
    assert pixels[..., 2].mean() > pixels[..., 0].mean() - 40  # purple-blue-green-yellow, not a photo's browns
    assert page.get_by_text("early layer").first.is_visible()
    page.screenshot(path=SHOTS / "layers-what-a-layer-sees.png")

    open_and_see(page, f"{server}/build?backbone=VGG16&preset=128&training=Train+from+a+layer"
                 "&trainable_from=block5_conv1", "The model in blocks")
    diagram = page.locator(diagram_css).first
    diagram.locator("svg g.node").first.wait_for()
    assert diagram.locator("svg g.node").count() == 12  # input, 5 blocks, the cut, 5 head layers
    drawn = picture(diagram)
    drawn.save(SHOTS / "build-diagram.png")
    shaded = diagram.locator("svg g.node").filter(has=page.locator('[fill="#c9ced6"]'))  # tlcore.explain.graph.FROZEN_FILL
    assert [shaded.nth(i).locator("text").first.text_content() for i in range(shaded.count())] == [
        "block1", "block2", "block3", "block4"]  # frozen up to block5_conv1, which trains
    assert pixels_of(drawn, frozen) > 4 * 2000  # and painted grey
    assert pixels_of(drawn, head) > 5 * 2000  # the new head's five layers, green
    assert pixels_of(drawn, cut, tolerance=40) > 100
    page.screenshot(path=SHOTS / "build-diagram-page.png")


def test_transfer_against_scratch_is_drawn_on_home_and_on_the_run_page(server, page):
    """A develop-a-model demo's three runs, trained here into the server's run store (small and quick),
    opened by the links Home and Runs give: both target curves and the gap, drawn."""
    import dataclasses

    import tlcore

    store = tlcore.RunStore(tlcore.load_settings().data_dir / "runs")  # the server's (same TL_DATA_DIR)
    group, size = "demo-browser-test", (32, 32, 3)
    source_spec = tlcore.TransferSpec(backbone="VGG16", input_shape=size, weights=None, trainable_from="all",
                                      hidden_units=0)
    config = tlcore.TrainConfig(epochs=2, batch_size=8, validation_fraction=0.5)
    runs = {}

    def train(role, spec, dataset):
        runs[role] = store.create(spec, config, dataset.summary(), group=group, role=role)
        store.finish(runs[role], tlcore.train(spec, dataset, config))

    train("source", source_spec, tlcore.sample_dataset(per_class=4, size=32, seed=5))
    target = tlcore.demo_target_dataset(per_class=4, size=32, seed=5)
    reuse = dataclasses.replace(source_spec, trainable_from=None, base_model=str(store.get(runs["source"]).model_path))
    train("transfer", reuse, target)
    train("scratch", tlcore.scratch_spec(reuse), target)
    pair = tlcore.scratch_comparison(store, runs["transfer"])

    pages = ((f"{server}/?demo={group}", "home-demo.png"), (f"{server}/runs?run={runs['scratch']}", "run-vs-scratch.png"))
    for url, shot in pages:
        open_and_see(page, url, "Transfer against scratch")
        page.get_by_text("Gap", exact=True).first.wait_for()
        versus = chart_with(page, "line", 8)
        assert marks(versus, "symbol") == 16  # 2 models x 2 splits x 2 epochs, in the accuracy and loss panels
        drawn = np.asarray(picture(versus), dtype=int)
        blue = ((drawn[..., 2] > 150) & (drawn[..., 0] < 80)).sum()  # transfer
        red = ((drawn[..., 0] > 180) & (drawn[..., 1] < 80) & (drawn[..., 2] < 80)).sum()  # scratch
        assert blue > 100 and red > 100
        assert page.get_by_text(f"{pair.gap * 100:+.1f} points").first.is_visible()
        versus.scroll_into_view_if_needed()
        page.screenshot(path=SHOTS / shot)

    # the same run page: the most confidently wrong images, and on demand where the network looked in each
    wrong = store.get(runs["scratch"]).result.confidently_wrong
    assert wrong  # 25% right on 8 held-out images: there are wrong ones
    images = page.locator('[data-testid="stImage"] img')
    plain = images.count()
    page.get_by_text("Where the network looked (Grad-CAM)").click()
    page.get_by_text("Red marks the evidence for the wrongly predicted class").wait_for()
    wait_until_idle(page)
    assert images.count() == plain + len(wrong)  # one heatmap under each wrong image
    first_plain, first_heat = picture(images.nth(plain - len(wrong))), picture(images.nth(plain))
    assert first_heat.size == first_plain.size
    assert np.abs(np.asarray(first_heat, dtype=int) - np.asarray(first_plain, dtype=int)).mean() > 10  # heat drawn over
    images.nth(plain).scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "run-wrong-heatmaps.png")
