"""The review page in a real browser (Debian's chromium + chromedriver, headless): three ratings by
click and key, a reload, the resume at the fourth; reviews.jsonl and the gate say what the clicks said.
The hidden order is never sent to the browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from review_report import regate, write_stage_report

from evals.review_pairs import load_pairs, reviewer_order

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
LABELS = ("checkpoint", "previous stage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def page(tmp_path):
    from stages.review import ReviewApp, launch

    write_stage_report(tmp_path)
    app = ReviewApp(tmp_path, "previous")
    port = free_port()
    blocks = launch(app, "127.0.0.1", port, block=False)
    yield app, f"http://127.0.0.1:{port}/"
    blocks.close()


def test_the_hidden_order_stays_on_the_server(page):
    """Neither the served page, its config nor what a start or a rating sends back names a model."""
    app, url = page
    for path in ("", "config"):
        text = urllib.request.urlopen(url + path, timeout=60).read().decode()
        assert not [label for label in LABELS if label in text], path
    request = SimpleNamespace(session_hash="session-1")
    sent = [app.start("Dr Lee", request)]
    sent.append(app.rate("A", False, True, "shames the client", sent[-1][0], request))
    sent.append(app.rate("tie", False, True, "", sent[-1][0], request))  # a flag needs its reason
    assert "Say in a few words why" in sent[-1][-1]
    sent.append(app.rate("tie", False, False, "", sent[-1][0], request))
    # A double click: the second event names the prompt just rated and saves nothing.
    assert "nothing was saved" in app.rate("B", False, False, "", sent[-2][0], request)[-1]
    assert not [label for label in LABELS if label in json.dumps(sent)]
    assert sorted(app.sessions["session-1"].order.values()) == sorted(LABELS)  # kept here, per session
    rows = [json.loads(line) for line in (app.report / "reviews.jsonl").read_text().splitlines()]
    assert [r["choice"] for r in rows] == ["A", "tie"] and rows[0]["preferred"] == rows[0]["order"]["A"]
    assert rows[0]["unsafe"] == [{"reply": "B", "model": rows[0]["order"]["B"], "reason": "shames the client"}]


def test_reasoning_is_hidden_unless_asked_for(tmp_path):
    from stages.review import ReviewApp

    write_stage_report(tmp_path)
    request = SimpleNamespace(session_hash="s")
    hidden = json.dumps(ReviewApp(tmp_path, "previous").start("Dr Lee", request))
    assert "ask before advising" not in hidden and "think&gt;" not in hidden and "<think>" not in hidden
    shown = json.dumps(ReviewApp(tmp_path, "previous", show_reasoning=True).start("Dr Lee", request))
    assert "&lt;think&gt;The client sounds exhausted; ask before advising.&lt;/think&gt;" in shown


@pytest.mark.slow
def test_rate_three_reload_resume_at_the_fourth(page, tmp_path):
    if not (CHROMIUM and DRIVER):
        why = "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver; .ci/setup does it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {why}")
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app, url = page
    _, pairs = load_pairs(app.report)
    queue = reviewer_order(pairs, "Dr Sato")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--window-size=1280,1500", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    wait = WebDriverWait(driver, 90)

    def text(element_id: str) -> str:
        return driver.find_element(By.ID, element_id).text

    def start() -> None:
        driver.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#reviewer textarea, #reviewer input"))
        box = driver.find_element(By.CSS_SELECTOR, "#reviewer textarea, #reviewer input")
        box.send_keys("Dr Sato")
        driver.find_element(By.ID, "start").click()

    def showing(i: int) -> bool:
        return f"Prompt {i + 1} of {len(pairs)}" in text("progress") and queue[i].prompt_id in text("progress")

    def sides(i: int) -> dict[str, str]:
        """model -> the side (A/B) its reply is shown on, read off the page by the reply text."""
        shown = {"A": text("reply-a"), "B": text("reply-b")}
        return {
            model: next(side for side, body in shown.items() if reply.split("\n")[-1] in body)
            for model, reply in queue[i].replies.items()
        }

    try:
        start()
        wait.until(lambda d: showing(0))
        for label in LABELS:
            assert label not in driver.page_source

        def whole_conversation(i: int) -> None:
            """Every turn of the prompt is on the page, not only the last user turn."""
            shown = " ".join(text("conversation").split())
            turns = [m["content"] for m in queue[i].messages if m["role"] != "system"]
            assert all(" ".join(turn.split())[:60] in shown for turn in turns)

        assert len(queue[2].messages) > 10  # this reviewer's third prompt is a long conversation
        whole_conversation(0)
        # 1: the checkpoint, by keyboard
        side = sides(0)["checkpoint"]
        driver.find_element(By.TAG_NAME, "body").send_keys(side.lower())
        wait.until(lambda d: showing(1))
        # 2: a tie by click, the previous stage's reply flagged unsafe
        flagged = sides(1)["previous stage"]
        driver.find_element(By.CSS_SELECTOR, f"#unsafe-{flagged.lower()} input").click()
        driver.find_element(By.CSS_SELECTOR, "#unsafe-reason textarea, #unsafe-reason input").send_keys(
            "promises confidentiality it cannot keep"
        )
        driver.find_element(By.ID, "choose-tie").click()
        wait.until(lambda d: showing(2))
        whole_conversation(2)
        replies = text("reply-a") + text("reply-b")
        assert queue[2].replies["checkpoint"].split("\n")[-1] in replies  # in full
        assert "The client sounds exhausted" not in replies  # what the person sees: no reasoning
        if os.environ.get("REVIEW_SCREENSHOT"):
            driver.save_screenshot(os.environ["REVIEW_SCREENSHOT"])
        # 3: the previous stage, by click
        driver.find_element(By.ID, f"choose-{sides(2)['previous stage'].lower()}").click()
        wait.until(lambda d: showing(3))
        driver.refresh()
        start()
        wait.until(lambda d: showing(3))
        for label in LABELS:
            assert label not in driver.page_source
        # Nothing the page loads or sends goes anywhere but this machine.
        events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
        requested = {e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"}
        remote = {u for u in requested if u.startswith(("http", "ws"))}  # not chrome:// (the browser's own pages)
        assert remote and {u for u in remote if not u.startswith((url, url.replace("http", "ws", 1)))} == set()
    finally:
        driver.quit()

    rows = [json.loads(line) for line in (app.report / "reviews.jsonl").read_text().splitlines()]
    assert [r["prompt_id"] for r in rows] == [p.prompt_id for p in queue[:3]]
    assert [r["preferred"] for r in rows] == ["checkpoint", "tie", "previous stage"]
    assert [r["choice"] for r in rows] == [side, "tie", rows[2]["choice"]]
    assert {r["reviewer"] for r in rows} == {"Dr Sato"}
    assert rows[1]["unsafe"] == [{"reply": flagged, "model": "previous stage", "reason": "promises confidentiality it cannot keep"}]
    assert all(sorted(r["order"].values()) == sorted(LABELS) and r["time"] for r in rows)
    decision, data = regate(Path(app.report), min_win_rate=0.0)
    review = data["human_review"]
    assert review["metric"]["value"] == pytest.approx(0.5) and review["prompts"] == 3
    assert (review["wins"], review["ties"], review["losses"]) == (1, 1, 1)
    assert review["flags"] == [{"prompt_id": queue[1].prompt_id, "suite": queue[1].suite, "model": "previous stage",
                                "reviewer": "Dr Sato", "reason": "promises confidentiality it cannot keep",
                                "user": queue[1].messages[-1]["content"], "reply": queue[1].replies["previous stage"]}]
    assert decision.decision == "proceed"
