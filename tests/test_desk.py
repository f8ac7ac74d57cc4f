"""The ZSM desk's screen (`baken desk`, desk/) in a real browser: Debian's Chromium driven by
selenium through /usr/bin/chromedriver, against a real registry and feedback service (shipped
covenants) over mTLS. One browser for the module; services and the screen per test."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from builders import NOW, Marking, Person
from feedback_harness import KPC_UTRECHT, RunningFeedback

from baken.feedback.v1 import feedback_service_pb2 as pb
from baken.registry.v1 import registry_service_pb2
from desk.gateway import Gateway
from desk.server import DeskServer
from desk.users import users_toml

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
OVJ_UTRECHT = "zsm-midden-nederland-ovj"
UTRECHT = "vh-regio-utrecht-utrecht"  # Midden-Nederland: the desk's own region
ROTTERDAM = "vh-rotterdam-rijnmond"  # another region
TRAVELLER = Person(bsn="111222333", surname="Jansen", birth_date=dt.date(1990, 5, 17))
ROTTERDAM_ADVICE = "Rotterdams advies: meldplicht bij de reclassering, elke week."
UTRECHT_ADVICE = "Utrechts advies: dagvaarden met bijzondere voorwaarden."
REASON = "Hij onttrok zich twee keer aan de meldplicht; daarom dagvaarden zonder voorwaarden."
PASSWORD = "correct horse battery staple"
USERS = [
    ("anouk", KPC_UTRECHT, "kpc-0117", PASSWORD),
    ("bram", OVJ_UTRECHT, "ovj-utrecht-0042", PASSWORD),
]
WAIT_S = 15


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.fail("Chromium or chromedriver missing: scripts/system-packages.sh (as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1366,768",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    )
    driver.set_window_size(1366, 768)
    try:
        yield driver
    finally:
        driver.quit()


class Screen:
    """The desk's screen in a thread of the test, in front of the test's services."""

    def __init__(self, feedback: RunningFeedback, tmp_path: Path) -> None:
        users_file = tmp_path / "desk-users.toml"
        users_file.write_text(users_toml(USERS), "utf-8")
        from desk.users import load_users

        self.gateway = Gateway(
            feedback.registry.pki_dir,
            [KPC_UTRECHT, OVJ_UTRECHT],
            registry=f"127.0.0.1:{feedback.registry.port}",
            feedback=f"127.0.0.1:{feedback.server.port}",
            clock=feedback.registry.clock,
        )
        self.server = DeskServer(("127.0.0.1", 0), self.gateway, load_users(users_file))
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.gateway.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


@pytest.fixture
def screen(feedback: RunningFeedback, tmp_path: Path) -> Iterator[Screen]:
    running = Screen(feedback, tmp_path)
    try:
        yield running
    finally:
        running.close()


def mark(feedback: RunningFeedback, person: Person, house: str, advice: str) -> None:
    feedback.registry.sync(
        Marking(person, f"{house}-{person.bsn}", house=house, advice=advice).upsert(feedback.ring)
    )


def record_inflow(
    feedback: RunningFeedback, person: Person, case: str, **fields: Any
) -> pb.InflowEntry:
    """RecordInflow as the desk's KPC party (what the inflow adapter does)."""
    from builders import subject

    arrest = fields.pop("arrest_time", NOW - dt.timedelta(hours=1))
    request = pb.RecordInflowRequest(
        case_reference=case,
        subject=subject(feedback.ring, person),
        subject_age=registry_service_pb2.SUBJECT_AGE_ADULT,
        offence_category="winkeldiefstal",
        on_behalf_of="inflow-adapter",
        **fields,
    )
    request.arrest_time.FromDatetime(arrest)
    entry: pb.InflowEntry = feedback.stub_for(KPC_UTRECHT).RecordInflow(request, timeout=10)
    return entry


def sign_in(browser: Any, screen: Screen, name: str) -> None:
    browser.delete_all_cookies()
    browser.get(screen.url + "/signin")
    browser.find_element(By.ID, "name").send_keys(name)
    # Enter submits the form: the keyboard is enough.
    browser.find_element(By.ID, "password").send_keys(PASSWORD, Keys.ENTER)
    wait(browser, lambda b: b.find_elements(By.ID, "desk"), "the desk's page after sign-in")


def wait(browser: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT_S) -> Any:
    # A poll may redraw an entry's head between finding an element and reading it: ask again.
    waiting = WebDriverWait(
        browser, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    )
    try:
        return waiting.until(condition)
    except TimeoutException:
        pytest.fail(f"not within {timeout} s: {what}")


def entry(browser: Any, name: str) -> Any:
    return browser.find_element(By.CSS_SELECTOR, f'li.entry[data-name="{name}"]')


def looked_up(browser: Any, name: str) -> Any:
    """The entry's element once its look-up is shown."""

    def shown(b: Any) -> Any:
        found = b.find_elements(By.CSS_SELECTOR, f'li.entry[data-name="{name}"] .verdict')
        return found[0] if found else None

    wait(browser, shown, f"the look-up of {name}")
    return entry(browser, name)


def fetch(browser: Any, method: str, url: str, body: Any = None, csrf: bool = True) -> Any:
    """fetch() from the signed-in page, as a user crafting a call by hand would."""
    script = """
        const [method, url, body, csrf, done] = arguments;
        const headers = {};
        if (body !== null) headers["Content-Type"] = "application/json";
        const token = document.querySelector('meta[name="csrf-token"]').content;
        if (csrf) headers["X-CSRF-Token"] = token;
        fetch(url, {method, headers, body: body === null ? undefined : JSON.stringify(body)})
          .then(async (r) => done({status: r.status, text: await r.text()}));
    """
    return browser.execute_async_script(script, method, url, body, csrf)


# -- tests ---------------------------------------------------------------------------------------


def test_every_answer_carries_the_security_headers(screen: Screen) -> None:
    for path in ("/signin", "/", "/static/desk.js", "/api/inflow"):
        _, headers, _ = screen.request("GET", path)
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["Cache-Control"] == "no-store", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
    assert screen.request("GET", "/")[0] == 303  # to the sign-in
    assert screen.request("GET", "/api/inflow")[0] == 401


def test_a_wrong_password_or_a_forged_sign_in_opens_no_session(
    screen: Screen, browser: Any
) -> None:
    browser.delete_all_cookies()
    browser.get(screen.url + "/signin")
    browser.find_element(By.ID, "name").send_keys("anouk")
    browser.find_element(By.ID, "password").send_keys("wrong password!", Keys.ENTER)
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "p.error"), "the refusal")
    assert not browser.find_elements(By.ID, "desk")
    # A sign-in posted from elsewhere carries no sign-in token: refused, even with the password.
    body = f"name=anouk&password={PASSWORD.replace(' ', '+')}&csrf=x".encode()
    status, headers, _ = screen.request(
        "POST", "/signin", body, {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert (status == 403 and "Set-Cookie" not in headers) or "baken_desk=" not in headers.get(
        "Set-Cookie", ""
    )


def test_a_hit_appears_without_reload_with_houses_advice_and_what_is_withheld(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, UTRECHT_ADVICE)
    mark(feedback, TRAVELLER, ROTTERDAM, ROTTERDAM_ADVICE)
    sign_in(browser, screen, "anouk")
    browser.execute_script("window.__notReloaded = true;")
    polled = int(browser.find_element(By.ID, "desk").get_attribute("data-polled") or 0)

    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4711")
    item = looked_up(browser, inflow.name)

    assert browser.execute_script("return window.__notReloaded === true;")
    assert int(browser.find_element(By.ID, "desk").get_attribute("data-polled")) > polled
    assert item.find_element(By.CSS_SELECTOR, ".verdict").text.startswith("HIT: known at 2")
    utrecht = item.find_element(By.CSS_SELECTOR, f'.house[data-house="houses/{UTRECHT}"]')
    assert utrecht.find_element(By.CSS_SELECTOR, ".advice-text").text == UTRECHT_ADVICE
    assert "CURRENT" in utrecht.find_element(By.CSS_SELECTOR, ".freshness").text
    # Rotterdam's advice: withheld from the KPC'er at intake, and the page says why.
    rotterdam = item.find_element(By.CSS_SELECTOR, f'.house[data-house="houses/{ROTTERDAM}"]')
    withheld = rotterdam.find_element(By.CSS_SELECTOR, '.withheld-item[data-fields~="advice"]')
    assert "outside your covenant's region" in withheld.text
    assert ROTTERDAM_ADVICE not in browser.page_source
    # The KPC'er's intake look-up is the inflow's check, and the list says so without reload.
    wait(
        browser,
        lambda b: "known" in entry(b, inflow.name).find_element(By.CSS_SELECTOR, ".state").text,
        "the entry checked",
    )
    assert "checked 2026-11-28" in entry(browser, inflow.name).text


def test_the_kpc_cannot_reach_advice_the_covenant_withholds_by_crafting_a_call(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    mark(feedback, TRAVELLER, ROTTERDAM, ROTTERDAM_ADVICE)
    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4712")
    sign_in(browser, screen, "anouk")
    looked_up(browser, inflow.name)
    entries_before = len(feedback.registry.tables()["access_log"])
    # Another purpose, another party, a subject of his own: the screen takes none of them.
    for url in (
        f"/api/lookup?entry={inflow.name}&purpose=afdoeningsbeslissing",
        f"/api/lookup?entry={inflow.name}&party={OVJ_UTRECHT}",
        "/api/lookup?entry=inflow/not-listed",
        "/api/lookup?subject=111222333",
    ):
        answer = fetch(browser, "GET", url)
        assert ROTTERDAM_ADVICE not in answer["text"], url
    crafted = json.loads(
        fetch(browser, "GET", f"/api/lookup?entry={inflow.name}&purpose=x")["text"]
    )
    assert crafted["markers"][0]["advice"] is None
    assert [w["reason"] for w in crafted["markers"][0]["withheld"] if w["field"] == "advice"] == [
        "outside your covenant's region"
    ]
    assert fetch(browser, "GET", "/api/lookup?entry=inflow/not-listed")["status"] == 400
    # Each view was a look-up of its own, logged (two of the four reached the registry).
    assert len(feedback.registry.tables()["access_log"]) > entries_before


def test_a_decision_with_a_deviation_reason_is_recorded_from_the_page_and_reaches_the_house(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, UTRECHT_ADVICE)
    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4713")
    sign_in(browser, screen, "anouk")  # the KPC'er feeds the OvJ's decision back
    item = looked_up(browser, inflow.name)
    item.find_element(By.CSS_SELECTOR, "details.decide > summary").click()
    form = item.find_element(By.CSS_SELECTOR, "form.decision")
    Select(form.find_element(By.NAME, "code")).select_by_value("dagvaarding")
    Select(form.find_element(By.NAME, "stage")).select_by_value("final")
    line = form.find_element(By.CSS_SELECTOR, f'fieldset.line[data-house="houses/{UTRECHT}"]')
    line.find_element(By.CSS_SELECTOR, 'input[value="not-followed"]').click()
    line.find_element(By.CSS_SELECTOR, "input.reason").send_keys(REASON, Keys.ENTER)

    wait(
        browser,
        lambda b: "recorded" in form.find_element(By.CSS_SELECTOR, ".result").text,
        "the decision recorded",
    )
    delivered = {row["house_id"]: feedback.stored(row) for row in feedback.tables()["deliveries"]}
    decision = delivered[UTRECHT].decision
    assert decision.code == pb.DECISION_CODE_DAGVAARDING
    assert decision.advice_followed == pb.ADVICE_FOLLOWED_NOT_FOLLOWED
    assert decision.deviation_reason == REASON
    (recorded,) = feedback.tables()["decisions"]
    assert recorded["request_key"].startswith(f"{KPC_UTRECHT}:")  # the KPC party's certificate


def test_a_held_decision_is_recorded_under_the_held_request_key(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, UTRECHT_ADVICE)
    held = pb.HeldDecision(
        code=pb.DECISION_CODE_STRAFBESCHIKKING,
        stage=pb.DECISION_STAGE_FINAL,
        request_key="inflow-zsm-mn-4714-1",
        problem="house_advice: a line for houses/vh-regio-utrecht-utrecht is required",
    )
    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4714", held_decision=held)
    sign_in(browser, screen, "anouk")
    item = looked_up(browser, inflow.name)
    form = item.find_element(By.CSS_SELECTOR, "form.decision.held")
    assert "strafbeschikking" in form.find_element(By.CSS_SELECTOR, ".held-note").text
    line = form.find_element(By.CSS_SELECTOR, f'fieldset.line[data-house="houses/{UTRECHT}"]')
    line.find_element(By.CSS_SELECTOR, 'input[value="followed"]').send_keys(Keys.SPACE)
    line.find_element(By.CSS_SELECTOR, "input.reason").send_keys(Keys.ENTER)
    wait(
        browser,
        lambda b: "recorded" in form.find_element(By.CSS_SELECTOR, ".result").text,
        "the held decision recorded",
    )
    (decision,) = feedback.tables()["decisions"]
    assert decision["request_key"] == f"{KPC_UTRECHT}:{held.request_key}"


def test_a_post_without_the_csrf_token_changes_nothing(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, UTRECHT_ADVICE)
    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4715")
    sign_in(browser, screen, "anouk")
    looked_up(browser, inflow.name)
    decision = {
        "entry": inflow.name,
        "code": "dagvaarding",
        "stage": "final",
        "lines": [{"house": f"houses/{UTRECHT}", "followed": "followed"}],
    }
    advice = {"entry": inflow.name, "house": f"houses/{UTRECHT}", "hours": 4, "question": "Advies?"}
    for url, body in (("/api/decision", decision), ("/api/advice", advice)):
        assert fetch(browser, "POST", url, body, csrf=False)["status"] == 403
    # A cross-site form can send neither the header nor JSON; its cookie alone does nothing.
    cookie = f"baken_desk={browser.get_cookie('baken_desk')['value']}"
    status, _, _ = screen.request(
        "POST",
        "/api/decision",
        json.dumps(decision).encode(),
        {"Cookie": cookie, "Content-Type": "text/plain", "Origin": "http://evil.example"},
    )
    assert status == 403
    tables = feedback.tables()
    assert tables["decisions"] == [] and tables["advice_requests"] == []


def test_a_field_with_script_is_shown_as_text(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    mark(feedback, TRAVELLER, UTRECHT, hostile)
    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4716")
    sign_in(browser, screen, "anouk")
    item = looked_up(browser, inflow.name)
    assert item.find_element(By.CSS_SELECTOR, ".advice-text").text == hostile
    assert browser.execute_script("return window.__pwned;") is None
    assert not item.find_elements(By.CSS_SELECTOR, ".advice-text img, .advice-text script")


def test_advice_requested_from_the_page_shows_its_term_and_fits_the_screen(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    mark(feedback, TRAVELLER, UTRECHT, UTRECHT_ADVICE)
    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4717")
    sign_in(browser, screen, "anouk")
    item = looked_up(browser, inflow.name)
    item.find_element(By.CSS_SELECTOR, "details.advise > summary").click()
    form = item.find_element(By.CSS_SELECTOR, "form.ask")
    hours = form.find_element(By.NAME, "hours")
    hours.clear()
    hours.send_keys("2")
    form.find_element(By.NAME, "question").send_keys("Is er een plan van aanpak?", Keys.ENTER)
    wait(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, "#requests li.state-open"),
        "the open request in the list",
    )
    (request,) = browser.find_elements(By.CSS_SELECTOR, "#requests li.state-open")
    assert "ZSM-MN-4717" in request.text and "due " in request.text
    # Two hours on: overdue, and the overdue-only list shows it.
    feedback.registry.clock.advance(dt.timedelta(hours=3))
    browser.find_element(By.ID, "overdue-only").send_keys(Keys.SPACE)
    wait(
        browser,
        lambda b: b.find_elements(By.CSS_SELECTOR, "#requests li.state-overdue"),
        "the overdue request",
    )
    # 1366 x 768: nothing runs off to the side; the focus is visible.
    width = browser.execute_script("return document.documentElement.scrollWidth;")
    assert width <= browser.execute_script("return window.innerWidth;")
    outline = browser.execute_script(
        "const b = document.querySelector('#overdue-only'); b.focus();"
        "return getComputedStyle(b).outlineStyle;"
    )
    assert outline != "none"


def test_the_ovj_reads_what_her_covenant_grants_and_records_nothing_through_the_page(
    feedback: RunningFeedback, screen: Screen, browser: Any
) -> None:
    antecedents = "Twee veroordelingen voor winkeldiefstal (2025)."
    feedback.registry.sync(
        Marking(
            TRAVELLER,
            f"{UTRECHT}-a",
            house=UTRECHT,
            advice=UTRECHT_ADVICE,
            at_information={"antecedents": antecedents, "care_deployed": "Schuldhulp."},
        ).upsert(feedback.ring)
    )
    inflow = record_inflow(feedback, TRAVELLER, "ZSM-MN-4718")
    sign_in(browser, screen, "bram")
    item = looked_up(browser, inflow.name)
    assert antecedents in item.text  # at.antecedents: her grant at afdoeningsbeslissing
    assert "Schuldhulp." not in browser.page_source  # at.care_deployed: nobody's
    (nobodys,) = item.find_elements(
        By.CSS_SELECTOR, '.withheld-item[data-fields~="at.care_deployed"]'
    )
    assert nobodys.text.startswith("withheld (no covenant grants it): ")
    assert not item.find_elements(By.CSS_SELECTOR, "form")
    body = {"entry": inflow.name, "code": "dagvaarding", "stage": "final", "lines": []}
    assert fetch(browser, "POST", "/api/decision", body)["status"] == 403
    assert feedback.tables()["decisions"] == []
    # The OvJ's look-up is for her decision; it is not the intake check.
    assert "not checked yet" in entry(browser, inflow.name).text


def test_the_screen_refuses_a_party_that_is_no_desk(pki_dir: Path) -> None:
    from baken.pki import PkiError

    with pytest.raises(PkiError, match="kpc and zsm-officier only"):
        Gateway(pki_dir, ["zsm-midden-nederland-politie"], registry="x:1", feedback="x:2")


def test_baken_desk_hashes_a_password_and_refuses_a_users_file_with_another_party(
    pki_dir: Path, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from desk.users import check_password

    def baken(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "desk", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    hashed = baken("--hash-password", stdin=PASSWORD + "\n")
    assert hashed.returncode == 0, hashed.stderr
    assert check_password(hashed.stdout.strip(), PASSWORD)
    assert not check_password(hashed.stdout.strip(), PASSWORD + "!")
    assert baken("--hash-password", stdin="kort\n").returncode == 2

    users = tmp_path / "users.toml"
    users.write_text(
        users_toml([("piet", "zsm-midden-nederland-politie", "pol-0001", PASSWORD)]), "utf-8"
    )
    refused = baken("--users", str(users), "--pki-dir", str(pki_dir), "--port", "0")
    assert refused.returncode == 2
    assert "the desk's screen serves kpc and zsm-officier only" in refused.stderr
    assert "Traceback" not in refused.stderr
