"""Home: what transfer learning is, and where each way of reusing a network lives."""

import streamlit as st

from ui.demo import render_demo

st.title(":material/science: Transfer Lab")
st.markdown(
    """
**Transfer learning** reuses a network that already learned to see, here one trained on
the 1.2 million photos of ImageNet, for a new job. Its early layers detect edges and
textures, its later layers parts and objects. Instead of learning all that again from
a few hundred of your own pictures, you keep what it knows and train only what is new.

Pick a backbone in the sidebar (VGG16 to start), then try the four ways to reuse it:
"""
)

WAYS = [
    ("../pages/predict.py", "1. Classifier", "Use the network as it is: upload a photo and see "
     "its top-5 ImageNet classes."),
    ("../pages/features.py", "2. Feature extractor", "Remove the output layer and keep the "
     "penultimate vector (4,096 numbers for VGG16's fc2) for each image, to download or feed "
     "another model."),
    ("../pages/build.py", "3. Integrated feature extractor", "Drop the ImageNet head, choose a new "
     "input size, a pooling and a new head, and freeze the pretrained layers."),
    ("../pages/train.py", "4. Fine-tuning", "Unfreeze some or all of the base (choose where training "
     "starts on Build, e.g. block5_conv1) and train on your own images, watching the curves live."),
    ("../pages/runs.py", "5. Develop-a-model", "Every training run is kept. Reuse a run's trained base for a "
     "new task: train a source model first, then build on it (the demo below does it end to end, offline)."),
    ("../pages/layers.py", "Look inside", "Every layer of a backbone, its output shape and "
     "parameters, and what include_top=False removes."),
]
for path, title, text in WAYS:
    with st.container(border=True):
        st.page_link(path, label=title)
        st.caption(text)

st.subheader("See a trained base transfer, offline")
st.markdown(
    """
Without ImageNet weights (this server may have none), a frozen base is random and passes on noise.
The **develop-a-model** way makes its own: train a **source** model on the sample shapes (circles,
squares, triangles, stripes) with its whole base learning, then reuse that trained base for a related
**target** task it never saw (rings, frames, hollow triangles and stars) from only a few images per
class, and train the same target **from scratch** beside it. Both curves and the gap show whether what
the source learned carried over.
"""
)
render_demo()
