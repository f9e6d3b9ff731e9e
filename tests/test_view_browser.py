"""The viewer page in Debian's headless Chromium (driven by Playwright): videos load and play in sync,
a seek on one player moves the other, filters change the rows, broken media show an error tile."""

from __future__ import annotations

import shutil

import pytest
from view_fixtures import make_run, serving

from ditto_hf.view import open_source

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`make install-test` installs it with apt)")

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra: pip install -e '.[test]'")

TILE_VIDEOS = "[...document.querySelectorAll('.tile[data-index=\"{index}\"] video')]"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    with serving(open_source(str(make_run(tmp_path_factory.mktemp("browser-run"))))) as base:
        yield base


def videos(page, index: int, expression: str):
    return page.evaluate(f"{TILE_VIDEOS.format(index=index)}.map(v => {expression})")


def wait_videos(page, index: int, condition: str, timeout: float = 20_000) -> None:
    players = TILE_VIDEOS.format(index=index)
    try:
        page.wait_for_function(f"{players}.length === 2 && {players}.every(v => {condition})", timeout=timeout)
    except sync_api.TimeoutError as exc:
        state = videos(page, index, "({time: v.currentTime, paused: v.paused, seeking: v.seeking, ready: v.readyState})")
        raise AssertionError(f"row {index}: players never reached `{condition}`: {state}") from exc


def test_page_plays_seeks_filters_and_shows_errors(browser, url, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requested, problems = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(url)
    page.wait_for_selector("body[data-state=ready]")
    assert page.locator(".tile").count() == 4

    # both bundled-clip videos of a row load (H.264 in mp4, as stored) and have their frames
    wait_videos(page, 0, "v.readyState >= 2")
    assert videos(page, 0, "[v.dataset.role, v.videoWidth, v.videoHeight, v.error]") == [["source", 64, 64, None], ["edited", 64, 64, None]]

    # one play button plays both; space (the selected row) pauses both
    page.click('.tile[data-index="0"] button.play')
    wait_videos(page, 0, "!v.paused && v.currentTime > 0.1")
    page.keyboard.press("Space")
    wait_videos(page, 0, "v.paused")

    # a seek on either player moves the other
    page.evaluate(f"{TILE_VIDEOS.format(index=0)}[0].currentTime = 0.5")
    wait_videos(page, 0, "Math.abs(v.currentTime - 0.5) < 0.05 && !v.seeking")
    page.evaluate(f"{TILE_VIDEOS.format(index=0)}[1].currentTime = 0.2")
    wait_videos(page, 0, "Math.abs(v.currentTime - 0.2) < 0.05 && !v.seeking")

    # the corrupted edit shows an error tile with the server's reason; the rejected row says why it has no edit
    page.wait_for_selector('.tile[data-index="2"] .error-tile[data-error="edited"]')
    assert "cannot be opened as a video" in page.inner_text('.tile[data-index="2"] .error-tile')
    assert page.inner_text('.tile[data-index="3"] .none-tile') == "no edited video (rejected by brightness)"

    # keyboard: → selects the next row; Enter opens its details (every field, the intermediate media)
    page.keyboard.press("Home")
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute(".tile.selected", "data-index") == "0"
    page.keyboard.press("ArrowRight")
    assert page.get_attribute(".tile.selected", "data-index") == "1"
    page.keyboard.press("Enter")
    page.wait_for_selector("#detail[open] .error-tile[data-error='depth']")
    assert "missing.mp4 does not exist" in page.inner_text("#detail .error-tile")
    assert "portrait" in page.inner_text("#detail table.fields")
    page.keyboard.press("Escape")
    page.click('.tile[data-index="0"] .instruction')
    page.wait_for_function("document.querySelector('#detail[open] .media[data-name=keyframe] img')?.naturalWidth === 16")
    page.keyboard.press("Escape")
    assert page.locator("#detail[open]").count() == 0

    # filters change the rows
    page.select_option("#status", "rejected")
    page.wait_for_function("document.querySelectorAll('.tile').length === 1 && document.body.dataset.state === 'ready'")
    assert page.get_attribute(".tile", "data-index") == "3"
    page.select_option("#status", "")
    page.fill("#search", "no such words")
    page.wait_for_function("document.querySelectorAll('.tile').length === 0 && document.body.dataset.state === 'ready'")
    assert page.inner_text("#message") == "No row matches these filters."
    page.fill("#search", "mirror")
    page.wait_for_function("document.querySelectorAll('.tile').length === 3 && document.body.dataset.state === 'ready'")

    page.screenshot(path=tmp_path / "view.png", full_page=True)
    assert (tmp_path / "view.png").read_bytes().startswith(b"\x89PNG")
    assert problems == []
    assert requested and all(address.startswith(url) for address in requested)  # nothing from outside (no CDN)
    page.close()
