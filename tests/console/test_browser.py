"""The console in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver (never a downloaded browser), against the real server on
127.0.0.1. One walk through, to keep the run time small: login with TOTP (the
``__Host-`` cookie as the browser keeps it), a search that finds a message, its timeline,
a resend with a reason that shows in the audit page, a CSRF-forged cancel refused, a
viewer refused a cancel, and a session that expires. A screenshot of each page goes to
the test's temporary folder (and to $CONSOLE_SCREENSHOTS when set: that is how the ones
in docs/console/ were made)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.console import totp
from gateway.console.server import RunningConsole, start_console
from gateway.console.web import COOKIE
from gateway.store.states import State
from tests.console.conftest import Setup

pytestmark = [pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture
def console(setup: Setup) -> Iterator[RunningConsole]:
    running = start_console(setup.ctx, setup.config, accounts=setup.accounts,
                            clock=setup.clock)
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.fail("chromium and chromium-driver are needed (scripts/os-deps.sh installs "
                    "them as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_console_in_chromium(setup: Setup, console: RunningConsole, browser: object,
                             tmp_path: Path) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    base = console.url.rstrip("/")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    keep = os.environ.get("CONSOLE_SCREENSHOTS")

    def shot(name: str) -> None:
        driver.save_screenshot(str(shots / f"{name}.png"))
        if keep:
            shutil.copy(shots / f"{name}.png", Path(keep) / f"{name}.png")

    def text(css: str) -> str:
        return driver.find_element(By.CSS_SELECTOR, css).text

    def click(by: str, what: str) -> None:
        """Click something that loads a page, and wait for that page (a loaded machine
        may still show the old one for a while). The old page is told apart by a mark
        set on its window, not by an element reference: Chrome sometimes answers a
        staleness check on the old page's element with "Node with given id does not
        belong to the document" instead of "stale" (SeleniumHQ/selenium#15401)."""
        driver.execute_script("window.gwOldPage = true")
        driver.find_element(by, what).click()
        WebDriverWait(driver, 30, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script(
                "return window.gwOldPage === undefined && document.readyState === 'complete'"))

    def log_in(name: str) -> None:
        driver.get(f"{base}/login")
        driver.find_element(By.ID, "name").send_keys(name)
        driver.find_element(By.ID, "password").send_keys(setup.secrets[name][0])
        step = totp.step_of(setup.clock.now)
        driver.find_element(By.ID, "code").send_keys(totp.code_at(setup.secrets[name][1], step))
        click(By.ID, "login")

    # login with TOTP; the session cookie as the browser keeps it
    driver.get(f"{base}/login")
    shot("login")
    log_in("olga")
    assert text("#who") == "olga (operator)"
    cookie = driver.get_cookie(COOKIE)
    assert cookie is not None
    assert cookie["secure"]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    shot("dashboard")

    # a search that finds the failed message, and its timeline
    click(By.LINK_TEXT, "Messages")
    shot("messages")
    driver.find_element(By.NAME, "message").send_keys("msg-00005")
    click(By.ID, "find")
    assert "Showing 1–1 of 1" in text("#summary")
    click(By.LINK_TEXT, "msg-00005")
    assert text("#state") == "failed"
    timeline = text("#timeline")
    assert "send_failed" in timeline
    assert "TlsHandshakeFailed" in timeline
    assert "failed" in text("#attempts")
    shot("message")

    # resend with a reason: visible in the audit page
    Select(driver.find_element(By.ID, "resend-reason")).select_by_value("partner-recovered")
    driver.find_element(By.ID, "resend-ticket").send_keys("INC-31")
    click(By.ID, "resend-button")
    assert "is now sealed" in text(".flash")
    assert setup.ctx.spool.get(setup.fixed.failed).state is State.SEALED
    driver.get(f"{base}/audit?code=resent_by_operator")
    events = text("#events")
    assert "olga" in events
    assert "reason=partner-recovered" in events
    assert "ticket=INC-31" in events
    shot("audit")
    driver.get(f"{base}/partners")
    shot("partners")
    driver.get(f"{base}/certificates")
    shot("certificates")

    # a forged form (wrong CSRF token) is refused
    driver.get(f"{base}/messages/{setup.fixed.retrying}")
    driver.execute_script(
        "document.querySelector('#cancel-form input[name=csrf]').value = 'forged'")
    Select(driver.find_element(By.ID, "cancel-reason")).select_by_value("test")
    click(By.ID, "cancel-button")
    assert "CSRF" in text("#error")
    assert setup.ctx.spool.get(setup.fixed.retrying).state is State.RETRYING

    # a viewer is refused a cancel
    click(By.CSS_SELECTOR, ".logout button")
    log_in("vic")
    assert text("#who") == "vic (viewer)"
    driver.get(f"{base}/messages/{setup.fixed.retrying}")
    Select(driver.find_element(By.ID, "cancel-reason")).select_by_value("test")
    click(By.ID, "cancel-button")
    assert "a viewer cannot cancel" in text("#error")
    assert setup.ctx.spool.get(setup.fixed.retrying).state is State.RETRYING

    # the session expires after the idle timeout
    setup.clock.now += setup.config.idle_timeout + 1
    driver.get(f"{base}/messages")
    assert driver.current_url.endswith("/login?expired=idle")
    assert "without activity" in text("#note")
    with setup.ctx.audit() as log:
        refused = [dict(e.event.detail)["reason"] for e in log.query(code="console_refused")]
    assert refused == ["csrf", "role"]
    assert len(list(shots.glob("*.png"))) == 7
