"""In a real browser: Debian's chromium, driven through chromedriver by Selenium, over HTTPS to
deploy/run-local (real nginx with a throwaway certificate, real gunicorn).

The pages render with nginx's stylesheet under the site's strict Content-Security-Policy, and
Django's admin works behind the proxy: its CSS from nginx, login with the CSRF check passing, a
POST without the CSRF cookie refused. One browser serves the whole module. A failed test saves a
screenshot of each page it opened (the report's "screenshots" section says where).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import Baked, require_tool
from helpers import DOMAIN, LiveStack, start_stack

FRAMEWORKS = ["wsgi", "flask", "django"]
# Chromium drops the requests it has in flight when this machine's network changes: the booted-server
# tests that run beside these add and remove interfaces. Its error page is the machine's, not the
# site's, so a page or a login is tried again, a few times at most.
NETWORK_CHANGED = "ERR_NETWORK_CHANGED"
NETWORK_CHANGE_TRIES = 3
LOGIN_TITLE = "Log in | Django site admin"
SUPERUSER = {"username": "admin", "password": "a-long-Test-password-77", "email": "admin@example.com"}
# style.css: body { background: #f6f7f9 } and main { border-radius: 0.5rem }.
PAGE_BACKGROUND = "rgb(246, 247, 249)"
# nginx's /static/ location: `expires 30d` (Django's own answers say no-cache).
NGINX_STATIC_CACHE = "max-age=2592000"
PASSWORD_HASHING_SECONDS = 30
# Flags for chromium run as root in a container, fetching nothing on its own.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    # The local stack's certificate is a throwaway self-signed one.
    "--ignore-certificate-errors",
    # The site's domain pointed to this machine, as a user does in /etc/hosts to try it locally.
    f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1",
]
# Installed before any page script runs: every CSP violation of the page, as the browser reports it.
RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""
CSP_CONSOLE = re.compile(r"Content Security Policy|Refused to", re.IGNORECASE)


class Browser:
    """The module's chromium, with what each test saw: pages opened and their screenshots."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self.screenshots: list[tuple[str, bytes]] = []
        self.logged: list[dict] = []

    def open(self, url: str) -> None:
        for _ in range(NETWORK_CHANGE_TRIES):
            self.driver.get(url)
            if not self.interrupted():
                break
        self.shoot()

    def interrupted(self) -> bool:
        """Whether Chromium shows its own error page for a request it dropped on a network change."""
        return NETWORK_CHANGED in self.driver.page_source

    def shoot(self) -> None:
        name = re.sub(r"[^\w.-]+", "_", self.driver.current_url.split("://", 1)[-1]).strip("_")
        self.screenshots.append((name, self.driver.get_screenshot_as_png()))

    def script(self, source: str, *args):
        return self.driver.execute_script(source, *args)

    def console(self) -> list[dict]:
        """Everything the browser's console said since the test began (reading the log empties it)."""
        self.logged += self.driver.get_log("browser")
        return self.logged

    def csp_problems(self) -> list[str]:
        """CSP violations of the current page, from its listener and from the console."""
        seen = self.script("return window.cspViolations || []")
        console = [entry["message"] for entry in self.console() if CSP_CONSOLE.search(entry["message"])]
        return seen + console

    def errors(self) -> list[str]:
        """What the console reported as errors (SEVERE): a failed resource, a script error."""
        return [entry["message"] for entry in self.console() if entry["level"] == "SEVERE"]

    def save_screenshots(self, folder: Path) -> Path:
        """Called by conftest when the test failed: the pages it opened, then how the last one ends."""
        folder.mkdir(parents=True, exist_ok=True)
        self.shoot()
        for number, (name, png) in enumerate(self.screenshots, start=1):
            (folder / f"{number:02d}-{name[:80]}.png").write_bytes(png)
        return folder


@pytest.fixture(scope="module")
def chromium() -> Iterator:
    """One headless chromium for the module; Selenium gets the driver and browser paths, so its
    manager has nothing to look up or download."""
    binary = require_tool("chromium", "apt-get install chromium")
    driver_path = require_tool("chromedriver", "apt-get install chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        try:
            driver.set_page_load_timeout(30)
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS})
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def browser(chromium) -> Browser:
    chromium.get_log("browser")  # what earlier tests left in the console is theirs
    chromium.delete_all_cookies()
    return Browser(chromium)


@pytest.fixture(scope="module")
def stacks(cookies_session, framework_venv: Path) -> Iterator[dict[str, LiveStack]]:
    """wsgi, flask and django with HTTPS, each under run-local; the Django one with a superuser."""
    require_tool("nginx", "apt-get install nginx")
    require_tool("openssl", "apt-get install openssl")
    with ExitStack() as running, pytest.MonkeyPatch.context() as starting:
        # gunicorn's own access log (off by default; nginx's has every request) shows what reached the app.
        starting.setenv("GUNICORN_ACCESSLOG", "-")
        stacks = {}
        for framework in FRAMEWORKS:
            result = cookies_session.bake(extra_context={"framework": framework, "tls_mode": "existing"})
            assert result.exception is None, result.exception
            project = Path(result.project_path)
            stacks[framework] = running.enter_context(start_stack(project, framework_venv))
        starting.undo()
        django = Baked(stacks["django"].project, {})
        # As deploy/setup-venv leaves it: deploy/manage uses the project's venv.
        (django.path / "my_app_venv").symlink_to(framework_venv)
        env = {**os.environ, **{f"DJANGO_SUPERUSER_{key.upper()}": value for key, value in SUPERUSER.items()}}
        made = django.run("deploy/manage", "createsuperuser", "--noinput", env=env)
        assert made.returncode == 0, made.stdout + made.stderr
        yield stacks


def base_url(stack: LiveStack, host: str = "localhost") -> str:
    return f"https://{host}:{stack.state['https_port']}"


def response_headers(browser: Browser, url: str) -> dict[str, str]:
    """The headers of `url` fetched from the current page, as the browser received them."""
    return browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then((answer) => done(Object.fromEntries(answer.headers.entries())));",
        url,
    )


def wait_for(browser: Browser, condition, what: str, seconds: float = 10) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser.driver, seconds, poll_frequency=0.05).until(lambda driver: condition())
    except TimeoutException:
        raise AssertionError(f"{what}: not reached within {seconds}s (now at {browser.driver.current_url})") from None


def log_in(browser: Browser, stack: LiveStack, password: str, host: str = "localhost") -> None:
    """Fill Django's admin login form and send it, as a person would (again, as a person would, when
    Chromium dropped the request on a network change)."""
    from selenium.webdriver.common.by import By

    for _ in range(NETWORK_CHANGE_TRIES):
        browser.open(base_url(stack, host) + "/admin/login/")
        browser.driver.find_element(By.NAME, "username").send_keys(SUPERUSER["username"])
        browser.driver.find_element(By.NAME, "password").send_keys(password)
        browser.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        wait_for(browser, lambda: browser.driver.title != LOGIN_TITLE or browser.interrupted(), "an answer", 30)
        if not browser.interrupted():
            return


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_home_page_renders_with_nginx_stylesheet_and_no_csp_violation(stacks, browser, framework: str) -> None:
    stack = stacks[framework]
    browser.open(base_url(stack) + "/")
    assert browser.driver.title == "My App"
    sheets = browser.script("return [...document.styleSheets].map((sheet) => sheet.href)")
    assert sheets == [base_url(stack) + "/static/style.css"]
    # The stylesheet applied: these come from style.css, not from the browser's defaults.
    assert browser.script("return getComputedStyle(document.body).backgroundColor") == PAGE_BACKGROUND
    assert browser.script("return getComputedStyle(document.querySelector('main')).borderTopLeftRadius") == "8px"
    assert response_headers(browser, "/static/style.css")["cache-control"] == NGINX_STATIC_CACHE
    assert '"GET / HTTP/1.1" 200' in stack.gunicorn_log()  # the page came from the app, through nginx
    assert "/static/style.css" not in stack.gunicorn_log()  # its stylesheet did not
    assert browser.csp_problems() == []
    # The icon the browser asks for by itself comes from nginx too: no failed request in the console.
    icon = browser.script("return fetch('/favicon.ico').then((r) => [r.status, r.headers.get('content-type')])")
    assert icon == [200, "image/x-icon"]
    assert "favicon" not in stack.gunicorn_log()
    assert browser.errors() == []


def test_csp_violations_are_seen(stacks, browser) -> None:
    """The check above can fail: an inline script, which the policy forbids, is reported."""
    stack = stacks["wsgi"]
    page = stack.project / "my_app" / "static" / "inline-script.html"  # nginx serves this folder as is
    page.write_text("<!doctype html><title>inline</title><script>document.title = 'ran';</script>")
    browser.open(base_url(stack) + "/static/inline-script.html")
    assert browser.driver.title == "inline"  # the script did not run
    problems = browser.csp_problems()
    assert any(problem.startswith("script-src-elem blocked inline") for problem in problems), problems


def test_django_admin_css_comes_from_nginx(stacks, browser) -> None:
    stack = stacks["django"]
    browser.open(base_url(stack) + "/admin/login/")
    assert browser.driver.title == LOGIN_TITLE
    sheets = browser.script("return [...document.styleSheets].map((sheet) => new URL(sheet.href).pathname)")
    assert "/static/admin/css/base.css" in sheets
    # Applied: the admin's header bar has the admin's colour, not the browser's transparent default.
    assert browser.script("return getComputedStyle(document.getElementById('header')).backgroundColor") == (
        "rgb(65, 118, 144)"
    )
    headers = response_headers(browser, "/static/admin/css/base.css")
    assert headers["cache-control"] == NGINX_STATIC_CACHE and "expires" in headers  # nginx's static location
    assert "/static/admin/" not in stack.gunicorn_log()  # collected, and served without Django
    assert browser.csp_problems() == []
    assert browser.errors() == []  # nothing the page asked for failed, favicon included


@pytest.mark.parametrize("host", ["localhost", DOMAIN])
def test_django_superuser_logs_into_admin_over_https(stacks, browser, host: str) -> None:
    """At each address run-local prints: localhost, and the domain pointed to 127.0.0.1."""
    stack = stacks["django"]
    log_in(browser, stack, SUPERUSER["password"], host)
    wait_for(
        browser,
        lambda: browser.driver.title == "Site administration | Django site admin",
        "the admin index",
        PASSWORD_HASHING_SECONDS,
    )
    browser.shoot()
    assert browser.driver.current_url == base_url(stack, host) + "/admin/"
    cookies = {cookie["name"]: cookie for cookie in browser.driver.get_cookies()}
    assert cookies["sessionid"]["secure"] and cookies["sessionid"]["httpOnly"]
    assert cookies["csrftoken"]["secure"]
    # A page of the admin that runs its JavaScript (the user form), within the policy too.
    browser.open(base_url(stack, host) + "/admin/auth/user/add/")
    assert browser.driver.title == "Add user | Django site admin"
    assert browser.csp_problems() == []
    # On every page of the way (login, index, user form): no failed request, no script error.
    assert browser.errors() == []


def test_django_login_post_without_the_csrf_cookie_is_refused(stacks, browser) -> None:
    from selenium.webdriver.common.by import By

    stack = stacks["django"]
    browser.open(base_url(stack) + "/admin/login/")
    browser.driver.delete_cookie("csrftoken")  # the form still carries its token; the cookie is gone
    browser.driver.find_element(By.NAME, "username").send_keys(SUPERUSER["username"])
    browser.driver.find_element(By.NAME, "password").send_keys(SUPERUSER["password"])
    browser.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(browser, lambda: browser.driver.title == "403 Forbidden", "Django's CSRF failure page")
    browser.shoot()
    assert "CSRF verification failed" in browser.driver.find_element(By.TAG_NAME, "body").text
    # The project's own failure page: styled by the site's stylesheet, within the site's policy.
    assert browser.script("return getComputedStyle(document.body).backgroundColor") == PAGE_BACKGROUND
    assert browser.csp_problems() == []
    # The refusal itself is the one error the console reports.
    assert [error for error in browser.errors() if "status of 403" not in error] == []
    assert re.search(r'"POST /admin/login/ HTTP/1.1" 403 ', stack.gunicorn_log())
    assert "Forbidden (CSRF cookie not set.): /admin/login/" in stack.gunicorn_log()
    # nginx writes its access log in batches, at least once a second (the browser speaks HTTP/2 to it).
    refused = re.compile(r'"POST /admin/login/ HTTP/[\d.]+" 403 ')
    access_log = Path(stack.state["nginx_access_log"])
    stack.wait_for(lambda: refused.search(access_log.read_text()), seconds=5, what="the 403 in nginx's access log")
    assert "sessionid" not in {cookie["name"] for cookie in browser.driver.get_cookies()}
