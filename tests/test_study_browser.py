"""A rater completes a study in headless Chromium, reloading half-way; every answer is stored."""

import json
import shutil
import threading

import pytest

from talkbench.study.app import create_app
from talkbench.study.store import AnswerStore
from tests.study_fixtures import make_small_study

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which("chromium"), reason="Debian chromium not installed (make system)"),
]
CHOICE = {"lipsync": "left", "realism": "right"}


@pytest.fixture
def server(tmp_path):
    from werkzeug.serving import make_server

    study_dir = make_small_study(tmp_path / "study")
    srv = make_server("127.0.0.1", 0, create_app(study_dir), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", study_dir
    srv.shutdown()


def _answer_current_trial(page):
    # the previous trial's buttons are all disabled; wait for the next trial's
    page.wait_for_selector("#questions .question button:not(:disabled)")
    for row in page.query_selector_all("#questions .question"):
        criterion = row.get_attribute("data-criterion")
        with page.expect_response("**/api/answer") as response:
            row.query_selector(f'button[data-choice="{CHOICE[criterion]}"]').click()
        assert response.value.ok


def test_rater_completes_study_across_a_reload(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, study_dir = server
    manifest = json.loads((study_dir / "manifest.json").read_text())
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{url}/?rater=rater1")
        page.click("#agree")
        progress = []
        _answer_current_trial(page)
        progress.append(page.text_content("#progress"))
        page.reload()  # mid-way: the page must resume at the next unanswered trial
        page.wait_for_selector("#trial:not(.hidden), #done:not(.hidden)")
        while page.is_visible("#trial"):
            progress.append(page.text_content("#progress"))
            _answer_current_trial(page)
            page.wait_for_selector("#questions .question button:not(:disabled), #done:not(.hidden)")
        assert page.is_visible("#done")
        page.screenshot(path=str(tmp_path / "study-done.png"))
        browser.close()
    assert not errors
    stored = AnswerStore(study_dir / "answers.db").frame()
    expected = {(t["id"], c) for t in manifest["trials"] for c in t["criteria"]}
    assert set(zip(stored["trial"], stored["criterion"])) == expected
    assert len(stored) == len(expected)  # nothing answered twice
    assert (stored["choice"] == stored["criterion"].map(CHOICE)).all()
    assert set(stored["rater"]) == {"rater1"}


@pytest.fixture
def rating_server(tmp_path):
    from werkzeug.serving import make_server

    from tests.study_fixtures import make_small_rating_study

    study_dir = make_small_rating_study(tmp_path / "rating")
    srv = make_server("127.0.0.1", 0, create_app(study_dir), threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", study_dir
    srv.shutdown()


def test_rater_answers_rating_trials_and_the_attention_check(rating_server):
    import re

    from playwright.sync_api import sync_playwright

    url, study_dir = rating_server
    manifest = json.loads((study_dir / "manifest.json").read_text())
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        page.goto(f"{url}/?rater=rater2")
        page.click("#agree")
        while True:
            page.wait_for_selector("#questions .question button:not(:disabled), #done:not(.hidden)")
            if page.is_visible("#done"):
                break
            for row in page.query_selector_all("#questions .question"):
                buttons = row.query_selector_all("button")
                assert [b.text_content() for b in buttons][0] == "1 Bad"  # the MOS scale, labelled
                question = row.query_selector("p").text_content()
                asked = re.search(r"please answer (\d)", question)  # the instructed response
                with page.expect_response("**/api/answer") as response:
                    row.query_selector(f'button[data-choice="{asked[1] if asked else 4}"]').click()
                assert response.value.ok
        browser.close()
    stored = AnswerStore(study_dir / "answers.db").frame().set_index(["trial", "criterion"])["choice"]
    expected = {(t["id"], c): t["expected"] or "4" for t in manifest["trials"] for c in t["criteria"]}
    assert stored.to_dict() == expected
    assert any(t["check"] == "instructed" for t in manifest["trials"])
    from talkbench.study.analysis import load_answers
    from talkbench.study.ratings import analyze_ratings

    result = analyze_ratings(load_answers(study_dir), n_boot=200)
    assert result["excluded_raters"] == [] and set(result["mos"]["mos"]) == {4.0}
