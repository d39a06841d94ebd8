"""The web page in headless Chromium (Debian's `chromium`, driven by Playwright; never a downloaded browser).

Loads the page from the real `lrsa serve`, submits a post with a real photo, and checks the highlighted
aspects (colour by sentiment, confidence) and both rationales on screen against the JSON API's answer.
Screenshots go to $LRSA_ARTIFACTS (or pytest's temporary directory); the path is printed.

A missing chromium or playwright FAILS this test. To opt out explicitly (e.g. on a machine without a
browser), set LRSA_SKIP_BROWSER_TESTS=1.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from serving_fixtures import (  # noqa: F401 - fixtures
    InThreadServer,
    StubPredictor,
    artifacts_dir,
    checkpoint_dir,
    model_server,
    photo_jpeg,
    real_posts,
)

pytestmark = pytest.mark.data

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
COLOURS = {"POS": "rgb(217, 242, 225)", "NEU": "rgb(227, 232, 239)", "NEG": "rgb(251, 224, 222)"}  # app.css


def _chromium() -> str:
    if os.environ.get("LRSA_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("browser tests opted out with LRSA_SKIP_BROWSER_TESTS=1")
    path = os.environ.get("LRSA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium); "
                    "set LRSA_SKIP_BROWSER_TESTS=1 to opt out explicitly")
    return path


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright Python package is missing (pip install playwright; no `playwright install`)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _page(browser, server_url: str, **context_kw):
    context = browser.new_context(**context_kw)
    page = context.new_page()
    outside: list[str] = []

    def guard(route):  # the page must not reach anything but this server
        host = urlparse(route.request.url)
        if route.request.url.startswith(("data:", "blob:")) or f"{host.scheme}://{host.netloc}" == server_url:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    return context, page, outside, console_errors


_DROP = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], "chelsea.jpg", {type: "image/jpeg"}));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
}"""


def _submit_and_check(browser, server_url: str, post: dict, photo: Path, shot: Path, drop: bool = False) -> dict:
    """Submit `post` with `photo` through the page; check it shows what the JSON API answers."""
    fields = {k: post[k] for k in ("text", "image_text") if post.get(k)}
    with open(photo, "rb") as fh:
        api = httpx.post(f"{server_url}/v1/predict", data=fields,
                         files={"image": (photo.name, fh, "image/jpeg")}, timeout=60).json()["prediction"]

    context, page, outside, console_errors = _page(browser, server_url, viewport={"width": 1100, "height": 900})
    page.goto(server_url + "/")
    assert page.title().startswith("LRSA")
    page.fill("#text", post["text"])
    if post.get("image_text"):
        page.fill("#image-text", post["image_text"])
    if drop:  # drag and drop onto the drop zone
        page.evaluate(_DROP, base64.b64encode(photo.read_bytes()).decode())
    else:
        page.set_input_files("#image", str(photo))
    # the preview is an <img> whose blob URL decodes asynchronously: wait for it (10 s), then check
    page.wait_for_selector("#preview", state="visible", timeout=10_000)
    assert page.is_visible("#preview")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)

    marks = page.query_selector_all("#post mark.aspect")
    expected = sorted(api["aspects"], key=lambda a: a["char_start"])
    assert len(marks) == len(expected)
    for mark, a in zip(marks, expected):
        assert mark.get_attribute("data-polarity") == a["polarity"]
        assert mark.inner_text().startswith(a["text"])
        assert f"{round(a['confidence'] * 100)}%" in mark.inner_text()
        assert mark.evaluate("e => getComputedStyle(e).backgroundColor") == COLOURS[a["polarity"]]
    # the whole post is on screen, highlighted in place (each mark adds its "POS 93%" badge)
    shown = page.inner_text("#post")
    for mark in marks:
        shown = shown.replace(mark.query_selector(".conf").inner_text(), "", 1)
    assert " ".join(shown.split()) == " ".join(post["text"].split())
    assert len(page.query_selector_all("#aspects li")) == len(expected)

    assert api["used_rationales"] and api["rationale"] is not None
    assert page.is_visible("#rationales")
    assert page.inner_text("#rationale-text") == (api["rationale"]["text"] or "(empty)")
    assert page.inner_text("#rationale-image") == (api["rationale"]["image"] or "(no image rationale)")
    assert page.is_visible("#result-image")
    assert page.evaluate("document.getElementById('result-image').naturalWidth") == 451

    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert outside == [], f"the page tried to reach outside the server: {outside}"
    assert console_errors == []
    context.close()
    return api


def test_page_with_the_real_model(browser, model_server, artifacts_dir, tmp_path):
    """A real twitter2015 post, its image description, and a real photo, through the real checkpoint."""
    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(photo_jpeg())
    api = _submit_and_check(browser, model_server.url, real_posts(2)[1], photo,
                            artifacts_dir / "serving_page_model.png")
    # "Crazy hair day ! Lydia is a contender . : )": the real model finds an aspect, highlighted on the page
    assert len(api["aspects"]) >= 1, api


def test_page_highlights_each_sentiment(browser, artifacts_dir, tmp_path):
    """The rendering of aspects of all three polarities at once, with a stand-in model whose aspects are known
    (the small test checkpoint mostly answers NEU/POS)."""
    from lrsa.serving import create_app

    photo = tmp_path / "chelsea.jpg"
    photo.write_bytes(photo_jpeg())
    post = {"text": "Chelsea the cat loves Mondays , says Garfield", "image_text": "a tabby cat"}
    with InThreadServer(create_app(StubPredictor())) as server:
        api = _submit_and_check(browser, server.url, post, photo, artifacts_dir / "serving_page_aspects.png",
                                drop=True)
    assert [(a["text"], a["polarity"]) for a in api["aspects"]] == [
        ("Chelsea", "POS"), ("Mondays", "NEU"), ("Garfield", "NEG")]


def test_page_keyboard_only_on_a_phone_screen(browser, model_server, artifacts_dir):
    context, page, outside, console_errors = _page(
        browser, model_server.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page.goto(model_server.url + "/")
    # Keyboard only: Tab from the top reaches the text box; Ctrl+Enter submits.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "text":
            break
    assert page.evaluate("document.activeElement.id") == "text"
    post = real_posts(2)[1]
    page.keyboard.type(post["text"])
    page.keyboard.press("Tab")  # the file input
    page.keyboard.press("Tab")  # the image description
    assert page.evaluate("document.activeElement.id") == "image-text"
    page.keyboard.type(post["image_text"])
    page.keyboard.press("Control+Enter")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.evaluate("document.activeElement.id") == "result"  # focus moves to the result
    # The rest of the form is reachable by Tab: file input, checkbox, button.
    ids = []
    page.focus("#text")
    for _ in range(6):
        page.keyboard.press("Tab")
        ids.append(page.evaluate("document.activeElement.id"))
    assert {"image", "image-text", "use-rationales", "submit"} <= set(ids), ids
    # Readable on a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.is_visible("#rationale-text")
    shot = artifacts_dir / "serving_page_phone.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    assert outside == [] and console_errors == []
    context.close()


def test_page_shows_what_each_aspect_leaned_on(browser, model_server, artifacts_dir):
    """`explain` ticked: under each aspect a bar of what it leaned on (tweet words, image, L_t, L_i) with the
    shares the JSON API gives, and the rationale words that mattered marked inside the rationales."""
    post = real_posts(2)[1]
    api = httpx.post(f"{model_server.url}/v1/predict", json={**post, "explain": True}, timeout=120).json()["prediction"]
    assert api["aspects"] and all(a["attribution"] for a in api["aspects"])
    plain = httpx.post(f"{model_server.url}/v1/predict", json=post, timeout=60).json()["prediction"]
    assert all(a["attribution"] is None for a in plain["aspects"])  # opt-in: nothing computed without it

    context, page, outside, console_errors = _page(browser, model_server.url, viewport={"width": 1100, "height": 900})
    page.goto(model_server.url + "/")
    page.fill("#text", post["text"])
    page.fill("#image-text", post["image_text"])
    page.check("#explain")
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    expected = sorted(api["aspects"], key=lambda a: a["char_start"])
    items = page.query_selector_all("#aspects li")
    assert len(items) == len(expected)
    for li, a in zip(items, expected):
        segs = li.query_selector_all(".leaned .bar span")
        assert [s.get_attribute("data-input") for s in segs] == ["text", "V", "L_t", "L_i"]
        for s in segs:
            share = a["attribution"]["shares"][s.get_attribute("data-input")]
            assert float(s.get_attribute("data-share")) == pytest.approx(share, abs=1e-4)
            width = s.evaluate("e => e.getBoundingClientRect().width")
            bar = s.evaluate("e => e.parentElement.getBoundingClientRect().width")
            assert width == pytest.approx(share * bar, abs=1.0)  # drawn: the segment is as wide as its share
        assert "leaned on" in li.inner_text()
    assert page.is_visible("#leaned-legend")
    cues = {k: {(t["start"], t["end"]) for a in api["aspects"] for t in a["attribution"]["tokens"].get(k, [])}
            for k in ("L_t", "L_i")}
    assert cues["L_t"] or cues["L_i"]  # the tiny model reads both rationales: some words mattered
    for k, box, text in (("L_t", "#rationale-text", api["rationale"]["text"]),
                         ("L_i", "#rationale-image", api["rationale"]["image"])):
        marks = page.query_selector_all(f"{box} mark.cue")
        assert len(marks) == len(cues[k])
        assert sorted(m.inner_text() for m in marks) == sorted(text[s:e] for s, e in cues[k])
        assert page.inner_text(box) == (text or page.inner_text(box))  # marked in place: it reads as before
        for m in marks:
            assert m.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 241, 184)"
    shot = artifacts_dir / "serving_page_explain.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert outside == [] and console_errors == []
    context.close()


def test_page_reads_a_text_only_post_and_says_so(browser, model_server):
    context, page, _outside, console_errors = _page(browser, model_server.url)
    page.goto(model_server.url + "/")
    page.fill("#text", real_posts(1)[0]["text"])
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.is_visible("#notes") and "predicted from the text alone" in page.inner_text("#notes")
    assert console_errors == []
    context.close()


def test_page_shows_api_errors(browser, model_server):
    context, page, _outside, _errors = _page(browser, model_server.url)
    page.goto(model_server.url + "/")
    page.fill("#text", "x" * 2_001)
    page.fill("#image-text", "a photo")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert "text_too_long" in page.inner_text("#error")
    context.close()


def test_page_clears_the_previous_result_and_never_shows_a_python_exception(browser):
    """Defects: after an error the page kept the previous post's result below it; a 500 showed the Python
    exception. Here a good post, then a post the (stand-in) model fails on, then an input error."""
    from lrsa.serving import create_app

    with InThreadServer(create_app(StubPredictor())) as server:
        context, page, outside, console_errors = _page(browser, server.url)
        page.goto(server.url + "/")
        page.fill("#text", "Chelsea the cat loves Mondays")
        page.click("#submit")
        page.wait_for_selector("#result:not([hidden])", timeout=30_000)
        page.fill("#text", "boom")  # the stub model raises RuntimeError("stub model failure")
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        message = page.inner_text("#error")
        assert "could not analyse this post" in message and "internal_error" in message
        assert "RuntimeError" not in message and "stub model failure" not in message
        assert page.is_hidden("#result")  # the previous post's result is gone
        page.fill("#text", "x" * 2_001)
        page.click("#submit")
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        assert "text_too_long" in page.inner_text("#error") and page.is_hidden("#result")
        assert outside == []
        context.close()
