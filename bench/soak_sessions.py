"""Soak: open and close many app sessions that each predict, and report memory growth.

Run: .venv/bin/python bench/soak_sessions.py [sessions]
Each session is a fresh AppTest of app/streamlit_app.py on the Predict page (MobileNetV2,
untrained weights so no download is needed) that uploads a different made-up
image and gets its top-5. Resident memory is sampled after a warm-up of 10
sessions and then every 25 sessions. Target: under 100 MB growth after 200.
"""

import gc
import io
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def one_session(seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=120)
    at.session_state["backbone"] = "MobileNetV2"
    at.session_state["weights"] = "Random (untrained)"
    at.run()
    at.switch_page("../pages/predict.py").run()
    at.file_uploader[0].set_value(("photo.png", buffer.getvalue(), "image/png")).run()
    assert not at.exception and len(at.table[0].value) == 5, "a session did not predict"


def main(sessions: int = 200) -> None:
    started = time.perf_counter()
    for seed in range(10):
        one_session(seed)
    gc.collect()
    baseline = rss_mb()
    print(f"after 10 warm-up sessions: {baseline:.0f} MB resident")
    for done in range(1, sessions + 1):
        one_session(1000 + done)
        if done % 25 == 0:
            gc.collect()
            print(f"{done:>4} sessions: {rss_mb():.0f} MB (+{rss_mb() - baseline:.0f} MB)")
    growth = rss_mb() - baseline
    print(f"\n{sessions} sessions in {time.perf_counter() - started:.0f} s; memory growth {growth:.0f} MB "
          f"(target < 100 MB): {'met' if growth < 100 else 'NOT met'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
