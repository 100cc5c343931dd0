"""Train: the model from the Build page, on your images, with live curves."""

import streamlit as st

import tlcore
from ui import access, charts, control_help, datasets, models, sidebar, sweep, training, workers
from ui.clicks import click_request, handled
from ui.code_panel import code_panel
from ui.run_view import render_run

st.title("Train on your images")
if access.read_only():  # TL_READ_ONLY: a public demo trains nothing
    st.info("Training is off on this public demo: predict, look and explore on the other pages, or open the "
            "runs trained here.", icon=":material/lock:")
    st.page_link("../pages/runs.py", label="See the trained runs", icon=":material/history:")
    st.stop()
choice = sidebar.choice()
spec = st.session_state.get("transfer_spec") or tlcore.TransferSpec(
    backbone=choice.backbone, input_shape=(96, 96, 3), weights=choice.weights)
st.caption(f"Model from the Build page: {tlcore.spec_summary(spec)}.")
st.page_link("../pages/build.py", label="Change the model on the Build page", icon=":material/construction:")

st.subheader("1. Images")
dataset = datasets.dataset_picker()

counts_col, thumbs_col = st.columns([1, 2])
with counts_col:
    st.altair_chart(charts.class_counts(dataset.counts), width="stretch")
    st.caption(f"{len(dataset)} images in {len(dataset.class_names)} classes from {access.plain(dataset.name)}.")
    if dataset.skipped:
        with st.expander(f"{len(dataset.skipped)} file(s) skipped"):
            st.write("\n".join(f"- {access.plain(access.shown(line))}" for line in dataset.skipped))
    datasets.show_copies(dataset)
with thumbs_col:
    for label, name in enumerate(dataset.class_names):
        files = [str(f) for f, l in zip(dataset.files, dataset.labels) if l == label][:8]
        st.markdown(f"**{access.plain(name)}**")
        st.image(files, width=56)
classes = len(dataset.class_names)
st.session_state[datasets.TRAIN_CLASSES] = classes  # Build's head follows these images
if spec.num_classes != classes:
    st.info(f"**The new head is rebuilt for {classes} classes.** The model from Build ends in "
            f"{spec.num_classes} outputs; training gives it one output for each class of these images "
            f"({', '.join(access.plain(n) for n in dataset.class_names)}).", icon=":material/info:")
if spec.freezes_random_layers:
    st.warning("**Frozen random layers have nothing to pass on.** The frozen part of this base has untrained "
               "(random) weights, so what it hands the head is noise and accuracy tends to stay near chance "
               f"({1 / classes:.0%} for {classes} classes). Make every layer trainable on Build (*trainable "
               "from: all*), choose ImageNet weights where they can be downloaded, or run the develop-a-model "
               "demo on Home, which trains a base first and then reuses it.", icon=":material/info:")

st.subheader("2. Settings")
HELP = control_help.TRAIN
cols = st.columns(4)
epochs = cols[0].number_input("Epochs", 1, 200, 5, key="epochs", help=HELP["epochs"])
batch_size = cols[1].selectbox("Batch size", [8, 16, 32, 64], index=2, key="batch_size", help=HELP["batch_size"])
learning_rate = cols[2].selectbox("Learning rate", [1e-2, 3e-3, 1e-3, 3e-4, 1e-4], index=2, key="learning_rate",
                                  help=HELP["learning_rate"])
optimizer = cols[3].selectbox("Optimizer", list(tlcore.OPTIMIZERS), key="optimizer", help=HELP["optimizer"])
cols = st.columns(4)
validation = cols[0].slider("Validation share", 0.1, 0.5, 0.2, 0.05, key="validation", help=HELP["validation"])
augment = cols[1].checkbox("Augment (flip, rotate, zoom)", key="augment", help=HELP["augment"])
patience = cols[2].number_input("Early stopping patience (0: off)", 0, 50, 0, key="patience",
                                help=HELP["patience"])
with st.expander("Second phase: fine-tune (unfreeze and continue at a low learning rate)"):
    fine_tune = st.checkbox("Add a fine-tuning phase", key="fine_tune", help=HELP["fine_tune"])
    layer_names = models.layer_names(spec.backbone)
    fine_choices = [tlcore.ALL_LAYERS, *layer_names]
    fine_from = st.selectbox("Unfreeze from layer", fine_choices,
                             index=fine_choices.index(tlcore.default_trainable_from(spec.backbone)),
                             key="fine_from", disabled=not fine_tune, help=HELP["fine_from"])
    fine_epochs = st.number_input("Fine-tune epochs", 1, 100, 3, key="fine_epochs", disabled=not fine_tune,
                                  help=HELP["fine_epochs"])
    fine_rate = st.selectbox("Fine-tune learning rate", [1e-4, 1e-5, 1e-6], index=1, key="fine_rate",
                             disabled=not fine_tune, help=HELP["fine_rate"])

config = tlcore.TrainConfig(
    epochs=int(epochs), batch_size=int(batch_size), learning_rate=float(learning_rate), optimizer=optimizer,
    validation_fraction=float(validation), augment=augment, early_stopping=int(patience) or None,
    fine_tune_from=fine_from if fine_tune else None, fine_tune_epochs=int(fine_epochs) if fine_tune else 0,
    fine_tune_learning_rate=float(fine_rate),
)
run_config = workers.choose(config)  # the run, across several workers where it can; a sweep's trials take one each

code_panel("Keras code", tlcore.transfer_program(spec, config), "train_model")
sweep.section(spec, dataset, config)

st.subheader("3. Train")
training.show_capacity()
with_scratch = st.toggle(
    "Also train it from scratch, to compare", key="with_scratch",
    help="Queues a second run right after: the same model with random weights and every layer training, on "
         "the same split for the same epochs. Its page shows both curves and the gap, and says so if either "
         "run stopped early.")
if st.button("Train", type="primary", icon=":material/play_arrow:"):
    sidebar.load_or_explain(models.ensure_spec_weights, spec)
    queue, store = training.job_queue(), training.run_store()
    request = click_request("train")  # a second click before the page changed: the same job(s)
    try:
        if with_scratch:
            job, scratch = queue.submit_with_scratch(spec, dataset, run_config, store, owner=access.user(),
                                                     request=request)
        else:
            job, scratch = queue.submit(spec, dataset, run_config, store, owner=access.user(), request=request), None
    except tlcore.TLError as exc:
        st.error(access.message(exc))
        st.stop()
    st.session_state["job_id"], st.session_state["scratch_job_id"] = job.id, scratch and scratch.id
    handled("train")

jobs = training.job_queue().jobs
job = jobs.get(st.session_state.get("job_id", ""))
scratch = jobs.get(st.session_state.get("scratch_job_id") or "")
if job is None:
    st.stop()


@st.fragment(run_every=1.0)
def live_progress(job: tlcore.TrainingJob) -> None:
    snapshot = job.snapshot()
    if snapshot.finished:
        st.rerun()
    if snapshot.state == "queued":
        st.info(f"Waiting in line: position {snapshot.position}. One model trains at a time on this server.")
    else:
        progress = snapshot.progress
        eta = f", about {snapshot.remaining:.0f} s left" if snapshot.remaining is not None else ""
        where = workers.progress_words(job.config, progress, placed=bool(snapshot.node))
        memory = f" · worker memory {snapshot.peak_memory / 2**30:.1f} GB" if snapshot.peak_memory else ""
        st.progress(progress.fraction if progress else 0.0,
                    text=f"{snapshot.state.capitalize()}: {where} · {snapshot.elapsed:.0f} s{eta}{memory}")
    if len(snapshot.history):
        st.altair_chart(charts.training_curves(snapshot.history), width="content")
    if st.button("Stop", icon=":material/stop:", disabled=snapshot.state == "stopping", key=f"stop-{job.id}"):
        job.stop()


snapshot = job.snapshot()
if not snapshot.finished:
    live_progress(job)
    if scratch is not None:
        st.caption("Then the same model from scratch, to compare: it waits in line behind this one.")
    st.stop()
if not training.run_store().has(snapshot.run_id):  # deleted on Runs, maybe by someone else, maybe mid-training
    st.session_state.pop("job_id", None)
    st.info("This run was deleted on the Runs page, so there is nothing to show here. Train again above.")
elif snapshot.state == "failed":
    st.error(f"**Training did not finish.** {access.message(snapshot.error)}")
else:
    if snapshot.state == "stopped":
        st.warning("Stopped early: what was learned so far is kept." if len(snapshot.history) else
                   "Stopped before training began: nothing was trained, so there is no model.")
    render_run(training.run_store().get(snapshot.run_id), training.run_store())
if scratch is not None and not scratch.finished:
    st.subheader("The same model from scratch, to compare")
    live_progress(scratch)
elif scratch is not None and scratch.snapshot().state == "failed":
    st.error(f"**The run from scratch did not finish.** {access.message(scratch.snapshot().error)}")
