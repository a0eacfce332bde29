"""Drives the operator console in a real browser (Debian's Chromium through its WebDriver and
selenium) against a live router under load, and does what an operator would:

1. signs in with the admin token and waits for the route's figures to move;
2. replaces a plugin's file, which starts a shadow rollout (the router's config says so), waits
   for the candidate's figures in the rollouts table and promotes it from there;
3. taps a subject and waits for an event published on it to appear;
4. waits for the dead letter of an event whose destination is down, starts the destination,
   replays the dead letter from the console, and waits for the destination to receive it.

Usage: console_browser.py URL TOKEN SWAP_SOURCE SWAP_TARGET DESTINATION_PORT SCREENSHOT_DIR

Prints JSON: {"steps": [...done...], "received": [ids the destination got], "screenshots": [...]};
exits 1 (with the step that failed and the page's text) when a step does not happen in time."""

import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

WAIT = 60


class Destination(http.server.BaseHTTPRequestHandler):
    """The destination that was down: records each event posted to it."""

    received = []

    def do_POST(self):  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Destination.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def browser(profile):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1440,1100"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def publish(url, subject, event):
    request = urllib.request.Request(f"{url}/v1/events/{subject}", data=json.dumps(event).encode(),
                                     headers={"content-type": "application/cloudevents+json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202, answer.status


def main():
    url, token, swap_source, swap_target, port, shots = sys.argv[1:7]
    steps, screenshots = [], []
    profile = tempfile.mkdtemp(prefix="eventyard-chromium-")
    driver = browser(profile)

    def until(what, probe, timeout=WAIT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                found = probe()
            except Exception:  # noqa: BLE001 - the page is still changing
                found = None
            if found:
                return found
            time.sleep(0.2)
        page = driver.find_element(By.TAG_NAME, "body").text
        print(json.dumps({"failed": what, "steps": steps, "page": page}))
        driver.quit()
        sys.exit(1)

    def text(css):
        return driver.find_element(By.CSS_SELECTOR, css).text

    def shot(name, section=None):
        if section:
            driver.execute_script("arguments[0].scrollIntoView()", driver.find_element(By.CSS_SELECTOR, section))
        path = os.path.join(shots, name)
        driver.save_screenshot(path)
        screenshots.append(path)

    try:
        driver.get(f"{url}/console")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.ID, "sign-in").click()
        until("the console shows the route", lambda: driver.find_element(By.CSS_SELECTOR, '#routes tr[data-route="all"]'))

        def matched_per_second():
            cells = driver.find_elements(By.CSS_SELECTOR, '#routes tr[data-route="all"] td')
            value = cells[2].text
            return float(value[:-1]) * 1000 if value.endswith("k") else float(value)

        until("the route's figures move", lambda: matched_per_second() > 0)
        first = driver.find_element(By.CSS_SELECTOR, "#chart-matched polyline").get_attribute("points")
        until("the chart moves", lambda: driver.find_element(By.CSS_SELECTOR, "#chart-matched polyline").get_attribute("points") != first)
        steps.append("figures move")

        aside = swap_target + ".new"
        shutil.copyfile(swap_source, aside)
        os.rename(aside, swap_target)
        until("the candidate starts in the reload history",
              lambda: "rollout stage started by reload (shadow" in text("#reloads"))

        def candidate_events():
            cells = driver.find_elements(By.CSS_SELECTOR, '#rollouts tr[data-rollout="stage:candidate"] td')
            return int(cells[3].text) > 0

        until("the candidate's figures move in the rollouts table", candidate_events)
        steps.append("rollout figures shown")
        if os.environ.get("EVENTYARD_SCREENSHOTS"):
            time.sleep(20)  # for the pictures the README shows: a chart with some history
        shot("console-overview.png")
        driver.find_element(By.CSS_SELECTOR, 'button[data-rollout="stage/promote"]').click()
        until("the promotion appears in the reload history",
              lambda: "rollout stage promoted by operator" in text("#reloads"))
        until("the rollouts table empties", lambda: not driver.find_element(By.ID, "rollouts-none").get_attribute("hidden"))
        steps.append("candidate promoted from the console")

        driver.find_element(By.ID, "tap-pattern").clear()
        driver.find_element(By.ID, "tap-pattern").send_keys("audit.>")
        driver.find_element(By.ID, "tap-start").click()
        until("the tap starts", lambda: "watching" in text("#tap-status"))
        time.sleep(0.5)
        publish(url, "audit.login", {"specversion": "1.0", "id": "tapped-1", "source": "/console-test",
                                     "type": "login", "datacontenttype": "application/json", "data": {"user": "ada"}})
        until("the tap shows the published event", lambda: "tapped-1" in text("#tap-events"))
        steps.append("tap shows a published event")

        publish(url, "payments.eu", {"specversion": "1.0", "id": "dl-1", "source": "/console-test",
                                     "type": "payment", "datacontenttype": "application/json", "data": {"amount": 5}})

        def dead_letter_row():
            driver.find_element(By.ID, "dl-refresh").click()
            time.sleep(0.3)
            rows = driver.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
            return next((row for row in rows if "dl-1" in row.text), None)

        def in_row(css):
            # The list refreshes every few seconds: find the row afresh for each click.
            def click():
                dead_letter_row().find_element(By.CSS_SELECTOR, css).click()
                return True
            return click

        until("the dead letter is listed", dead_letter_row)
        until("the dead letter can be inspected", in_row("button"))
        until("the dead letter's event is shown", lambda: '"id": "dl-1"' in text("#dl-detail"))
        steps.append("dead letter listed and inspected")
        shot("console-dead-letters.png", "#dl-filter")

        server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Destination)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        until("the dead letter is selected", in_row("input.dl-select"))
        time.sleep(5.5)  # one refresh of the list later, it is still selected
        driver.find_element(By.ID, "dl-replay").click()
        until("the replay is confirmed", lambda: "1 replayed" in text("#dl-result"))
        until("the destination receives the replayed event",
              lambda: any(event.get("id") == "dl-1" for event in Destination.received))
        steps.append("dead letter replayed and delivered")
        until("the replay is recorded", lambda: "sink:hook queued" in (dead_letter_row() or driver).text)
        server.shutdown()
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    print(json.dumps({"steps": steps, "received": [e.get("id") for e in Destination.received], "screenshots": screenshots}))


if __name__ == "__main__":
    main()
