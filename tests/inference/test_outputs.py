"""The gallery `pdd predict` writes (index.html) shows file names and error messages as text: markup in them is
escaped and never runs, checked by parsing the page and, where Chromium is installed, by opening it."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from pdd.inference.bundle import Calibration
from pdd.inference.outputs import PredictionWriter
from pdd.inference.predictor import Prediction
from pdd.inference.readers import InputProblem

# each marks the page's <body> if its script runs
IMAGE_NAME = "<img src=x onerror=document.body.setAttribute('data-pwned','name')>.png"
SCRIPT_REASON = "cannot decode <script>document.body.setAttribute('data-pwned','reason')</script> pixel data"
SOURCE = "<svg onload=document.body.setAttribute('data-pwned','source')>.dcm"


class _Elements(HTMLParser):
    """Every start tag of a page and its attribute names, and the text of its script elements."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, set[str]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name for name, _ in attrs}))
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)
            self._in_script = False


@pytest.fixture
def gallery(tmp_path) -> Path:
    writer = PredictionWriter(tmp_path / "out", Calibration(0.5, 0.0, 1.0), 0.5, "a model <b>bold</b>",
                              ["a warning <i>italic</i>"])
    image = np.zeros((8, 8, 3), np.uint8)
    writer.add(Prediction(name=IMAGE_NAME, source=tmp_path / IMAGE_NAME, slice_index=None, score=0.7,
                          normalised=0.7, label=1, map=np.full((8, 8), 0.7, np.float32), image=image))
    writer.add_problem(InputProblem(tmp_path / SOURCE, SCRIPT_REASON))
    return writer.finish()


def test_the_gallery_escapes_names_and_messages(gallery):
    page = gallery.read_text(encoding="utf-8")
    elements = _Elements()
    elements.feed(page)
    assert not any(name.startswith("on") for _, names in elements.tags for name in names), "an event handler"
    assert [tag for tag, _ in elements.tags].count("script") == 1  # the page's own filter script only
    assert all("pwned" not in script for script in elements.scripts)
    assert [tag for tag, _ in elements.tags].count("img") == 1  # the overlay, not the file name's
    assert "&lt;img src=x onerror=" in page and "&lt;script&gt;" in page and "&lt;svg onload=" in page
    assert "a model &lt;b&gt;bold&lt;/b&gt;" in page and "a warning &lt;i&gt;italic&lt;/i&gt;" in page


def test_the_gallery_runs_no_script_of_its_inputs_in_a_browser(gallery, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium); the escaping is checked without it")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--allow-file-access-from-files", "--virtual-time-budget=5000", "--dump-dom", gallery.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert 'data-loaded="1"' in dom.stdout, dom.stderr[-2000:]  # the page ran its own script, and the overlay loaded
    elements = _Elements()
    elements.feed(dom.stdout)
    (body,) = [names for tag, names in elements.tags if tag == "body"]
    assert "data-pwned" not in body, "a script from a file name or an error message ran"
    assert "onerror=document.body" in dom.stdout  # shown as text
