"""Home: transfer learning in plain words, the demo first (its button above the fold), then each way to reuse
a network."""

import streamlit as st

from ui import first_screen, sidebar
from ui.demo import render_demo

st.title(":material/science: Transfer Lab")
st.markdown(
    """
A **neural network** learns to recognise pictures from many labelled examples. Teaching one from nothing
takes hundreds of thousands of photos. **Transfer learning** starts instead from a network that already
learned to see (its first layers find edges and colours, its later ones shapes and objects) and teaches it
only the new part of the job, from a few dozen pictures of your own. Nothing here needs code.
"""
)
if not first_screen.imagenet_available(sidebar.choice().backbone):
    st.caption(":material/cloud_off: This server has no copy of the networks trained on ImageNet (the 1.2 million "
               "photos they usually learn from) and cannot download one now. The demo below trains its own, "
               "offline; Predict classifies with the runs trained here.")

st.subheader("Start here: watch a network reuse what it learned")
st.markdown(
    """
One click trains three small networks on this server, offline, in a few minutes. The first learns simple
shapes (circles, squares, triangles, stripes). Then a new task it never saw (rings, frames, hollow
triangles, stars, with only 12 pictures of each) is learned twice: once **reusing** the first network's
layers, once **from nothing**. The two curves show how much reusing helped.
"""
)
render_demo()

st.subheader("Five ways to reuse a network, and a look inside")
st.caption("Each card opens a page. The sidebar picks the network they all start from (VGG16, the classic, "
           "or a smaller one such as MobileNetV2).")
WAYS = [
    ("../pages/predict.py", "1. Classifier", "Use the network as it is: give it a photo and see the five "
     "things it thinks it shows, with how sure it is and where it looks."),
    ("../pages/features.py", "2. Feature extractor", "Stop one layer before the answer and keep the numbers "
     "the network describes each image with (4,096 of them for VGG16), to compare images or feed another "
     "program."),
    ("../pages/build.py", "3. Integrated feature extractor", "Keep the network's layers, frozen, and put a "
     "new small ending on them for your own classes: choose the picture size and the new ending."),
    ("../pages/train.py", "4. Fine-tuning", "Teach the new ending with your own pictures, and let the last "
     "layers of the network adjust too; watch it learn, epoch by epoch."),
    ("../pages/runs.py", "5. Develop-a-model", "Every training is kept as a run. Reuse what one run learned "
     "as the start of a new task (the demo above does it end to end)."),
    ("../pages/layers.py", "Look inside", "Every layer of the network, the size of what it passes on, and "
     "what a layer sees in a picture."),
]
for row in (WAYS[:3], WAYS[3:]):
    for cell, (path, title, text) in zip(st.columns(3), row):
        with cell.container(border=True, height="stretch"):
            st.page_link(path, label=title, help=f"Opens the {path.split('/')[-1][:-3].capitalize()} page.")
            st.caption(text)
