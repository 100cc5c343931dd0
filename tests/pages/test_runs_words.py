"""AppTest: Runs opens the newest run (a new pair on its transfer run), overlays the pair, titles runs apart,
and calls a stopped twin what it is."""

import numpy as np
import pandas as pd
from support import open_page

import tlcore

SPEC = tlcore.TransferSpec(backbone="VGG16", input_shape=(32, 32, 3), weights=None, trainable_from="all",
                           num_classes=4, conv_blocks=1, conv_filters=32)
NAMES = ("ring", "frame", "hollow", "star")


def _pair(store: tlcore.RunStore, group: str) -> dict[str, str]:
    """A transfer run (2 epochs) and its twin from scratch, stopped after epoch 1 of 2; no models."""
    ids = {}
    for role, accuracies, stopped in (("transfer", [0.5, 0.75], False), ("scratch", [0.25], True)):
        ids[role] = store.create(SPEC, tlcore.TrainConfig(epochs=2), {"name": "target shapes", "classes": NAMES},
                                 owner="ada", group=group, role=role)
        n = len(accuracies)
        history = pd.DataFrame({"phase": ["train"] * n, "loss": np.ones(n), "accuracy": accuracies,
                                "val_loss": np.ones(n), "val_accuracy": accuracies})
        confusion = tuple(tuple(int(i == j) for j in range(4)) for i in range(4))
        store.record_result(ids[role], history, tlcore.RunResult(NAMES, accuracies[-1], 1.0, confusion, (1.0,) * 4,
                                                                 (1.0,) * 4, stopped=stopped, seconds=1.0))
    return ids


def test_runs_opens_the_new_pair_on_its_transfer_run_and_says_the_twin_stopped_early():
    from ui.training import run_store

    ids = _pair(run_store(), "runs-words-pair")
    at = open_page("../pages/runs.py")
    assert at.selectbox(key="opened_run").value == ids["transfer"]  # the newest run is the scratch twin
    overlay = at.multiselect[0]
    assert set(overlay.value) == {ids["transfer"], ids["scratch"]}
    titles = tlcore.run_titles(run_store().list())
    assert titles[ids["scratch"]].startswith("VGG16 on target shapes, from scratch · ")
    assert titles[ids["transfer"]].startswith("VGG16 on target shapes, reusing a base · ")
    assert at.radio[0].options == ["accuracy on held-out images", "loss on held-out images",
                                   "accuracy on training images", "loss on training images"]
    said = " ".join(m.value for m in at.markdown)
    assert "The run from scratch stopped early: Stop was pressed after epoch 1 of 2." in said
    assert "compared at epoch 1, the last both reached: transfer 50.0%, from scratch 25.0%" in said
    warnings = " ".join(w.value for w in at.warning)
    assert "not a fair comparison" in warnings
    labels = [m.label for m in at.metric]
    assert labels[:3] == ["Transfer at epoch 1", "From scratch at epoch 1", "Gap at epoch 1"]
    assert at.metric[2].value == "+25.0 points"
    assert "Gap" not in labels  # no final-accuracy gap presented as fair
    caption = next(c.value for c in at.caption if c.value.startswith(f"Run `{ids['transfer']}`"))
    assert "VGG16 at 32x32, 1 new convolutional block of 32 3x3 filters, global average pooling head" in caption
    assert "4 outputs" in caption


def test_a_run_deleted_elsewhere_while_open_here_is_said_so_not_blamed_on_a_link():
    from ui.training import job_queue, run_store

    ids = _pair(run_store(), "runs-words-deleted")
    at = open_page("../pages/runs.py")
    assert at.selectbox(key="opened_run").value == ids["transfer"] and ids["transfer"] in str(at.query_params["run"])
    job_queue().delete_run(ids["transfer"], run_store())  # another tab, or an admin
    at.run()
    assert not at.exception, at.exception
    toasts = [t.value for t in at.toast]
    assert any(t.startswith("The run you had open is no longer on this server") for t in toasts), toasts
    assert not any("in this link was not used" in t for t in toasts), toasts
    assert at.selectbox(key="opened_run").value != ids["transfer"]


def test_the_runs_table_shows_the_kept_models_accuracy_not_its_best_epochs():
    """A run without early stopping keeps its last epoch: 25% here, though an epoch reached 75% (the table said
    75%). A run still training shows its best epoch so far."""
    from ui.training import run_store

    store = run_store()
    kept = store.create(SPEC, tlcore.TrainConfig(epochs=3), {"name": "kept last epoch"}, owner="ada")
    history = pd.DataFrame({"phase": ["train"] * 3, "loss": np.ones(3), "accuracy": [0.5, 0.75, 0.25],
                            "val_loss": np.ones(3), "val_accuracy": [0.5, 0.75, 0.25]})
    confusion = tuple(tuple(int(i == j) for j in range(4)) for i in range(4))
    store.record_result(kept, history, tlcore.RunResult(NAMES, 0.25, 1.0, confusion, (1.0,) * 4, (1.0,) * 4))
    training = store.create(SPEC, tlcore.TrainConfig(epochs=3), {"name": "still training"}, owner="ada")
    store.record_history(training, history.iloc[:2])
    at = open_page("../pages/runs.py")
    table = at.dataframe[0].value.set_index("name")
    assert "best_val_accuracy" not in table.columns
    assert table.loc["VGG16 on kept last epoch", "accuracy"] == 0.25
    assert table.loc["VGG16 on still training", "accuracy"] == 0.75
