"""The web app in a real browser (Debian's headless Chromium, driven by Playwright) against
the local stack of ``sluice up``: the files and ``config.json`` Terraform put in the app's
bucket, served with the security headers of the Terraform output (the CSP included), the
local HTTP API, the emulator's user pool, and the pipeline behind them.

One journey as a user lives it (sign in with a temporary password, upload photos and a
data file, watch them processed, browse labels and filter the grid, download a bundle,
delete an image as an administrator, sign out), and the rules around it: a refused type
says why, a member sees no delete, large files go in parts, no page has a serious or
critical axe-core violation, nothing is logged to the console, nothing is requested from
a third party, and every page fits a 360 px wide screen.

Every wait is Playwright's auto-waiting ``expect`` with a deadline; none is a fixed sleep.
``SLUICE_WEB_SCREENSHOTS=1`` also writes each page to docs/screenshots/ (README, web/README).
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from sluice.image_items import plain
from sluice.label_items import images_for_label, label_counts
from sluice.local.stack.state import StateDir
from sluice.ops.audit import pending_messages, wait_until_drained
from tests.e2e.conftest import ROOT, Stack
from tests.terraform_support import NEEDS_API

pytestmark = [pytest.mark.e2e, NEEDS_API]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
AXE = ROOT / "tests" / "e2e" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
SAMPLES = ROOT / "samples"
PHOTOS = [
    SAMPLES / "photos" / name
    for name in (
        "sunset-beach.jpg",
        "ocean-rotated-6.jpg",
        "forest-upside-down-3.jpg",
        "forest-palette.png",
        "ocean-waves.webp",
    )
]
DATA_FILE = SAMPLES / "retina" / "scans-partly-invalid.json"
EXPECTED_REFUSAL = re.compile(r"Failed to load resource: .* status of 4(13|15|22) ")
PROCESSING_MS = 240_000
PAGE_MS = 30_000
ADMIN = ("web-admin@sluice.local", "Web-Temporary-Passw0rd!", "Web-Admin-Passw0rd!1")
MEMBER = ("web-member@sluice.local", "Web-Member-Passw0rd!1")


# --- the stack, its users ------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_url(stack: Stack) -> str:
    url = StateDir(ROOT, stack.outputs_file.parent).read_stack().get("web_url")
    assert url, "sluice up recorded no web_url: the environment has no web app"
    return str(url)


@pytest.fixture(scope="module")
def users(stack: Stack) -> None:
    """An administrator with a temporary password (the app asks for a new one) and a member."""
    cognito = stack.client("cognito-idp")
    pool = stack.environment.user_pool_id
    email, temporary, _ = ADMIN
    cognito.admin_create_user(
        UserPoolId=pool,
        Username=email,
        TemporaryPassword=temporary,
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": email}],
    )
    for group in ("admin", "member"):
        cognito.admin_add_user_to_group(UserPoolId=pool, Username=email, GroupName=group)
    member, password = MEMBER
    cognito.admin_create_user(
        UserPoolId=pool,
        Username=member,
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": member}],
    )
    cognito.admin_set_user_password(
        UserPoolId=pool, Username=member, Password=password, Permanent=True
    )
    cognito.admin_add_user_to_group(UserPoolId=pool, Username=member, GroupName="member")


# --- the browser -------------------------------------------------------------------------------


@dataclass
class Watch:
    """What a page did that no test may allow: console errors and third-party requests."""

    allowed_origins: set[str]
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", self._request)

    def _console(self, message: Any) -> None:
        # Chromium logs every 4xx answer as "Failed to load resource"; the API's refusals
        # (a type it does not take) are answers the app shows, not errors of the app.
        if message.type == "error" and not EXPECTED_REFUSAL.match(message.text):
            self.errors.append(message.text)

    def _request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" not in self.allowed_origins:
            self.foreign.append(request.url.split("?", 1)[0])

    def assert_clean(self) -> None:
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.foreign == [], f"requests to third parties: {self.foreign}"


@pytest.fixture(scope="module")
def browser_type() -> Iterator[Any]:
    assert Path(CHROMIUM).exists(), "no /usr/bin/chromium: run scripts/browser.sh"
    with sync_playwright() as driver:
        yield driver.chromium


@pytest.fixture
def open_page(
    browser_type: Any, stack: Stack, web_url: str, users: None, tmp_path_factory: Any
) -> Iterator[Callable[..., tuple[Any, Watch]]]:
    """A new browser (fresh user-data-dir) on the app; its watch is checked at the end."""
    api_url = str(StateDir(ROOT, stack.outputs_file.parent).read_stack()["api_url"])
    allowed = {web_url, api_url.rstrip("/"), stack.endpoint_url.rstrip("/")}
    opened: list[tuple[Any, Watch]] = []

    def open_(width: int = 1280, height: int = 900) -> tuple[Any, Watch]:
        context = browser_type.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
            accept_downloads=True,
        )
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(PAGE_MS)
        watch = Watch(allowed)
        watch.attach(page)
        page.goto(web_url)
        opened.append((context, watch))
        return page, watch

    yield open_
    for context, watch in opened:
        context.close()
        watch.assert_clean()


def sign_in(page: Any, email: str, password: str) -> None:
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def go(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Pages").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


def assert_accessible(page: Any, what: str) -> None:
    """axe-core, injected from tests/e2e/browser/node_modules: no serious or critical issue.

    Evaluated through the DevTools protocol: a <script> tag would be (rightly) blocked by
    the app's CSP, which the test keeps on.
    """
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document)")
    serious = [
        f"{violation['id']} ({violation['impact']}): {violation['help']}"
        for violation in result["violations"]
        if violation["impact"] in ("serious", "critical")
    ]
    assert serious == [], f"{what}: {serious}"


def screenshot(page: Any, name: str) -> None:
    if os.environ.get("SLUICE_WEB_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def label_texts(stack: Stack) -> list[str]:
    """The labels table's counts as the library shows them, most images first."""
    table = stack.environment.labels_table
    assert table
    return [f"{label} ({count})" for label, count in label_counts(stack.client("dynamodb"), table)]


def drained(stack: Stack) -> None:
    sqs = stack.client("sqs")
    assert wait_until_drained(
        lambda: pending_messages(sqs, stack.environment), timeout=PROCESSING_MS / 1000, interval=1
    ), "the queues did not drain"


def label_pairs(texts: list[str]) -> list[tuple[str, int]]:
    """ "colour:blue (12)" -> ("colour:blue", 12)."""
    pairs = []
    for text in texts:
        name, _, count = text.rpartition(" (")
        pairs.append((name, int(count.rstrip(")"))))
    return pairs


def shown_labels(page: Any) -> Any:
    return page.locator("#labels li[data-label]:not([data-label='']) label")


def shown_bytes(count: int) -> str:
    """The page's byte count (web/js/dom.js formatBytes): "812 B", "14.2 KB"."""
    value, unit = float(count), 0
    while value >= 1024 and unit < 4:
        value, unit = value / 1024, unit + 1
    return f"{count} B" if unit == 0 else f"{value:.1f} {['B', 'KB', 'MB', 'GB', 'TB'][unit]}"


def assert_image_details(page: Any, stack: Stack, image_id: str) -> None:
    """The details show each label with the confidence the labels table holds for this
    image, and each thumbnail with the pixel and byte size its metadata item holds."""
    dynamodb = stack.client("dynamodb")
    assert stack.environment.images_table and stack.environment.labels_table
    item = plain(
        dynamodb.get_item(
            TableName=stack.environment.images_table, Key={"image_id": {"S": image_id}}
        )["Item"]
    )
    detail = page.locator("#detail")
    shown = detail.locator("#detail-labels li")
    expect(shown).to_have_count(len(item["labels"]))
    for label in item["labels"]:
        members, _ = images_for_label(dynamodb, stack.environment.labels_table, label, 1000)
        [confidence] = [m.confidence for m in members if m.image_id == image_id]
        text = detail.locator(f"#detail-labels li[data-label='{label}'] .confidence")
        expect(text).to_have_text(re.compile(r"^\d+\.\d% confident$"))
        assert abs(float(text.inner_text().split("%")[0]) - confidence) <= 0.05, label
    rows = detail.locator("#detail-thumbnails tbody tr")
    expect(rows).to_have_count(len(item["thumbnails"]))
    for side, thumbnail in item["thumbnails"].items():
        row = detail.locator(f"#detail-thumbnails tr[data-size='{side}']")
        expect(row.locator(".pixels")).to_have_text(
            f"{thumbnail['width']} \u00d7 {thumbnail['height']} px"
        )
        expect(row.locator(".bytes")).to_have_text(shown_bytes(thumbnail["bytes"]))
        href = str(row.get_by_role("link").get_attribute("href"))
        fetched = page.request.get(href)
        assert fetched.ok and len(fetched.body()) == thumbnail["bytes"], side


def assert_output_links(page: Any, stack: Stack, row: Any) -> None:
    """A processed data file's row links its clean output and its errors report: what the
    links serve is what PROCESSED holds."""
    key = str(row.get_attribute("data-key"))
    s3 = stack.client("s3")
    for link, stored_key in (
        (row.locator("a.output-link"), f"data/{key}"),
        (row.locator("a.errors-report-link"), f"errors/{key}.jsonl"),
    ):
        expect(link).to_have_attribute("href", re.compile("^http"))
        fetched = page.request.get(str(link.get_attribute("href")))
        stored = s3.get_object(Bucket=stack.environment.processed_bucket, Key=stored_key)
        assert fetched.ok and fetched.body() == stored["Body"].read(), stored_key


# --- the journey -------------------------------------------------------------------------------


def test_a_user_uploads_browses_bundles_deletes_and_signs_out(
    open_page: Callable[..., tuple[Any, Watch]], stack: Stack, tmp_path: Path
) -> None:
    # A name of its own: other modules on the shared stack send the same sample file, and
    # the Data files page lists every receipt an admin may see.
    data_file = tmp_path / f"{DATA_FILE.stem}-{uuid.uuid4().hex[:8]}{DATA_FILE.suffix}"
    data_file.write_bytes(DATA_FILE.read_bytes())
    page, _ = open_page()
    screenshot(page, "sign-in")
    assert_accessible(page, "sign in")

    # Sign in with the temporary password; the app asks for a new one first.
    email, temporary, new_password = ADMIN
    sign_in(page, email, temporary)
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("New password, again").fill(new_password)
    page.get_by_role("button", name="Set password and sign in").click()
    expect(page.get_by_role("heading", level=1, name="Upload")).to_be_visible()
    expect(page.locator("#who-name")).to_have_text(f"{email} (admin)")
    assert_accessible(page, "upload")

    # Five photos and a data file, each with its own progress bar, then their receipts.
    page.get_by_label("Dataset of data files").select_option("retina")
    page.locator("#files").set_input_files([*map(str, PHOTOS), str(data_file)])
    files = page.locator("ul.files > li")
    expect(files).to_have_count(6)
    for photo in PHOTOS:
        item = page.locator(f"li[data-file='{photo.name}']")
        expect(item).to_have_attribute("data-state", "processed", timeout=PROCESSING_MS)
    data_item = page.locator(f"li[data-file='{data_file.name}']")
    expect(data_item).to_have_attribute("data-state", "processed", timeout=PROCESSING_MS)
    # Its invalid records are named by position and rule (the receipt's reasons).
    expect(data_item.locator(".message")).to_contain_text("record ")
    overall = page.locator("#overall-progress")
    assert overall.get_attribute("value") == overall.get_attribute("max")
    expect(page.locator("#overall-text")).to_contain_text("6 finished")
    screenshot(page, "upload")

    # The data file's receipt on the Data files page, filterable by status.
    go(page, "Data files")
    row = page.locator("#inputs tbody tr", has_text=data_file.name)
    expect(row).to_have_attribute("data-status", "processed")
    expect(row.locator("ul.reasons li").first).to_contain_text("record ")
    page.get_by_label("Show data files with").select_option("rejected")
    expect(page.locator("#inputs tbody tr", has_text=data_file.name)).to_have_count(0)
    page.get_by_label("Show data files with").select_option("processed")
    expect(page.locator("#inputs tbody tr", has_text=data_file.name)).to_have_count(1)
    assert_output_links(page, stack, page.locator("#inputs tbody tr", has_text=data_file.name))
    assert_accessible(page, "data files")
    screenshot(page, "data-files")

    # The library's labels equal the labels table once analysis has finished.
    drained(stack)
    go(page, "Library")
    expected = label_texts(stack)
    assert expected, "the photos got no labels"
    expect(shown_labels(page)).to_have_text(expected, timeout=PAGE_MS)
    assert_accessible(page, "library")

    # Filtering the grid by a label shows exactly that label's images.
    label, count = label_pairs(expected)[0]
    page.get_by_label(expected[0]).check()
    expect(page.locator("#grid > li")).to_have_count(min(count, 24))
    expect(page.locator("#grid img[src]").first).to_be_visible()
    page.locator("#grid > li button").first.click()
    detail = page.locator("#detail")
    expect(detail.locator("#detail-labels li", has_text=label)).to_have_count(1)
    expect(detail.locator("#original-link")).to_have_attribute("href", re.compile("^http"))
    assert_image_details(
        page, stack, str(page.locator("#grid > li").first.get_attribute("data-image"))
    )
    assert_accessible(page, "library, an image's details")
    screenshot(page, "library")

    # A bundle of that label, downloaded through the page.
    go(page, "Download")
    page.get_by_label(expected[0]).check()
    page.get_by_label("Email or phone for a notification (optional)").fill("photos@example.com")
    page.get_by_role("button", name="Request the bundle").click()
    link = page.locator("#bundle-link")
    expect(link).to_be_visible(timeout=PROCESSING_MS)
    expect(page.locator("#bundle-state")).to_contain_text(f"Ready: {count} images")
    assert_accessible(page, "download")
    screenshot(page, "download")
    with page.expect_download() as download_info:
        link.click()
    archive = zipfile.ZipFile(io.BytesIO(Path(download_info.value.path()).read_bytes()))
    entries = archive.namelist()
    assert "manifest.json" in entries
    assert len([name for name in entries if name.startswith("images/")]) == count

    # An administrator deletes an image (after confirming); its label counts drop.
    go(page, "Library")
    expect(shown_labels(page)).to_have_text(expected, timeout=PAGE_MS)
    page.get_by_label(expected[0]).check()
    page.locator("#grid > li button").first.click()
    expect(detail.locator("#detail-labels li").first).to_be_visible()
    victim_labels = detail.locator("#detail-labels li").evaluate_all(
        "items => items.map(item => item.dataset.label)"
    )
    page.once("dialog", lambda dialog: dialog.accept())
    detail.get_by_role("button", name="Delete image").click()
    drained(stack)
    after = label_texts(stack)
    before = dict(label_pairs(expected))
    for name in victim_labels:
        assert dict(label_pairs(after)).get(name, 0) == before[name] - 1, (name, after)
    expect(shown_labels(page)).to_have_text(after, timeout=PAGE_MS)

    # Signing out forgets the tokens.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('sluice.tokens')") is None


# --- the rules around it -----------------------------------------------------------------------


def member_page(open_page: Callable[..., tuple[Any, Watch]], **size: int) -> Any:
    page, _ = open_page(**size)
    sign_in(page, *MEMBER)
    expect(page.get_by_role("heading", level=1, name="Upload")).to_be_visible()
    return page


def test_a_refused_type_says_why_and_a_member_sees_no_delete(
    open_page: Callable[..., tuple[Any, Watch]], stack: Stack
) -> None:
    page = member_page(open_page)
    page.locator("#files").set_input_files(str(SAMPLES / "other" / "clinic-notes.txt"))
    item = page.locator("li[data-file='clinic-notes.txt']")
    expect(item).to_have_attribute("data-state", "refused")
    expect(item.locator(".message")).to_contain_text("the type text/plain is not accepted")

    # The photo uploaded here is processed, so the library has an image to open.
    page.locator("#files").set_input_files(str(PHOTOS[0]))
    expect(page.locator(f"li[data-file='{PHOTOS[0].name}']")).to_have_attribute(
        "data-state", "processed", timeout=PROCESSING_MS
    )
    go(page, "Library")
    page.locator("#grid > li button").first.click()
    expect(page.locator("#detail h2")).to_be_visible()
    expect(page.locator("#detail").get_by_role("button", name="Delete image")).to_have_count(0)
    expect(page.locator("#who-name")).to_have_text(MEMBER[0])


def test_a_large_file_goes_up_in_parts(
    open_page: Callable[..., tuple[Any, Watch]], tmp_path: Path
) -> None:
    """Above config.json's multipart threshold the page uses the multipart route."""
    from PIL import Image

    noise = tmp_path / "big-noise.png"
    side = 1800  # random RGB pixels do not compress: about 9.7 MB, beyond 8 MiB
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(noise)
    page = member_page(open_page)
    part_puts: list[str] = []
    page.on(
        "request",
        lambda r: part_puts.append(r.url) if r.method == "PUT" and "partNumber=" in r.url else None,
    )
    page.locator("#files").set_input_files(str(noise))
    expect(page.locator("li[data-file='big-noise.png']")).to_have_attribute(
        "data-state", "processed", timeout=PROCESSING_MS
    )
    config = page.evaluate("async () => (await fetch('config.json')).text()")
    assert noise.stat().st_size > json.loads(config)["multipart_threshold_bytes"]
    assert len(part_puts) >= 2


def test_every_page_fits_a_small_screen_and_works_from_the_keyboard(
    open_page: Callable[..., tuple[Any, Watch]],
) -> None:
    page, _ = open_page(width=360, height=740)
    # Sign in with the keyboard alone.
    expect(page.get_by_label("Email")).to_be_visible()
    page.get_by_label("Email").focus()
    page.keyboard.type(MEMBER[0])
    page.keyboard.press("Tab")
    page.keyboard.type(MEMBER[1])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1, name="Upload")).to_be_visible()
    for name in ("Upload", "Library", "Download", "Data files"):
        link = page.get_by_role("navigation", name="Pages").get_by_role("link", name=name)
        link.focus()
        # A visible focus indicator: the outline the stylesheet gives :focus-visible.
        outline = link.evaluate("el => getComputedStyle(el).outlineStyle")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()
        assert outline != "none", name
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 360, f"{name} is {width} px wide at 360 px"
        if name == "Library":
            screenshot(page, "library-360")


def test_the_app_is_served_with_its_security_headers(stack: Stack, web_url: str) -> None:
    """The local web server sends the response headers policy's values (Terraform output)."""
    import requests

    response = requests.get(web_url + "/", timeout=30)
    assert response.status_code == 200
    expected = stack.environment.web_response_headers
    assert expected["Content-Security-Policy"].startswith("default-src 'none'")
    for name, value in expected.items():
        assert response.headers.get(name) == value, name
    assert response.headers["Cache-Control"] == "no-store"
    config = requests.get(web_url + "/config.json", timeout=30).json()
    assert config["sign_in"] == "password"
    assert config["user_pool_id"] == stack.environment.user_pool_id
