"""Kiln Studio's flows in Chromium against the live server (conftest: one server, one
browser, one signed-in page per module; each test leaves a screenshot).

The tests run in file order on the shared page: sign in, the prompt bar, generating,
additions, per-image actions, gallery, credits. Pixels and files are checked through
the API (``studio_http``), so what the browser showed is what the server stored.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("playwright")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.slow

FIRST_LOAD_BUDGET = 250 * 1024  # gzip -9 bytes of every JS and CSS response
GENERATE_TIMEOUT_MS = 90_000


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def preview(http: httpx.Client, asset_id: str) -> np.ndarray:
    r = http.get(f"/v1/assets/{asset_id}/preview")
    assert r.status_code == 200, r.text
    return pixels(r.content)


@pytest.fixture(scope="module")
def first_load(browser: Browser, studio_server, studio_key, studio_styles) -> Iterator[dict]:
    """The page, signed in, and what its first load fetched (from the network log)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    responses = []
    page.on("response", lambda r: responses.append(r))
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    main = page.goto(studio_server.url + "/")
    page.get_by_label("API key").fill(studio_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Prompt", exact=True)).to_be_visible()
    page.wait_for_load_state("networkidle")
    loaded = list(responses)
    yield {"page": page, "main": main, "responses": loaded, "errors": errors}
    context.close()


@pytest.fixture(scope="module")
def page(first_load) -> Page:
    return first_load["page"]


def generate(page: Page, n: int, prompt: str = "a red kiln at dusk") -> list[str]:
    """Fill the prompt and n, generate, wait for the n new cards; their asset ids."""
    before = page.locator(".batch").count()
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Images (1–12)").fill(str(n))
    page.get_by_role("button", name="Generate").click()
    batch = page.locator(".batch").first
    expect(page.locator(".batch")).to_have_count(before + 1)
    expect(batch.locator(".image-card")).to_have_count(n, timeout=GENERATE_TIMEOUT_MS)
    return [card.get_attribute("data-asset-id") for card in batch.locator(".image-card").all()]


def pick(page: Page, label_part: str) -> None:
    """Choose the model picker's option whose label contains ``label_part``."""
    picker = page.get_by_label("Model", exact=True)
    value = picker.locator("option", has_text=label_part).first.get_attribute("value")
    picker.select_option(value)


def card(page: Page, asset_id: str):
    return page.locator(f'.image-card[data-asset-id="{asset_id}"]')


# Sign-in, serving, first load


def test_sign_in_keeps_the_key_in_session_storage_only(first_load, studio_key, shot):
    page = first_load["page"]
    assert page.evaluate("sessionStorage.getItem('kiln.apiKey')") == studio_key
    assert page.evaluate("localStorage.length") == 0
    assert studio_key not in page.url
    assert page.evaluate("document.cookie") == ""
    for response in first_load["responses"]:
        assert studio_key not in response.url
    # The key went only in the Authorization header, to API routes.
    api_calls = [r.request for r in first_load["responses"] if "/v1/" in r.url]
    assert api_calls and all(
        r.headers.get("authorization") == f"Bearer {studio_key}" for r in api_calls
    )
    assert page.get_by_text(re.compile(r"Balance: \d+ credits")).is_visible()
    assert not first_load["errors"], first_load["errors"]
    shot(page)


def test_the_page_and_files_are_served_with_csp_and_cache_headers(first_load, shot):
    main = first_load["main"].headers
    assert main["cache-control"] == "no-cache"
    csp = main["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert "img-src 'self' blob: data:" in csp and "unsafe-inline" not in csp
    statics = [r for r in first_load["responses"] if "/studio/" in r.url]
    assert statics
    for r in statics:
        assert r.status == 200, r.url
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable", r.url
    # Every image on the page is a blob: URL (an API URL could not carry the key).
    shot(first_load["page"])


def test_first_load_js_and_css_is_small(first_load, shot):
    sizes = {}
    for r in first_load["responses"]:
        kind = r.headers.get("content-type", "")
        if "javascript" in kind or "text/css" in kind:
            sizes[r.url] = len(gzip.compress(r.body(), compresslevel=9))
    assert any(u.endswith(".js") for u in sizes) and any(u.endswith(".css") for u in sizes)
    total = sum(sizes.values())
    print(f"first load: {len(sizes)} JS/CSS files, {total} bytes gzip -9")
    assert total <= FIRST_LOAD_BUDGET, sizes
    shot(first_load["page"])


# Layout and keyboard


@pytest.mark.parametrize("width,height", [(1280, 800), (1920, 1080)])
def test_layout_fits_the_viewport(page: Page, width: int, height: int, shot):
    page.set_viewport_size({"width": width, "height": height})
    page.evaluate("window.scrollTo(0, 0)")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for control in (
        page.get_by_label("Prompt", exact=True),
        page.get_by_label("Model", exact=True),
        page.get_by_role("button", name="Generate"),
    ):
        box = control.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["y"] >= 0, box
        assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, box
    # Dark theme by default.
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    r, g, b = (int(v) for v in re.findall(r"\d+", background)[:3])
    assert r + g + b < 150, background
    shot(page)
    page.set_viewport_size({"width": 1280, "height": 800})


UNNAMED = re.compile(
    r"^\s*- (textbox|combobox|button|checkbox|radio|spinbutton|slider)(\s*\[[^\]]*\])?:?\s*$"
)


def test_keyboard_reaches_every_control_with_a_visible_focus_and_a_label(page: Page, shot):
    page.locator("#advanced summary").click()
    page.locator("#additions summary").click()
    snapshot = page.locator("form.promptbar").aria_snapshot()
    for needed in (
        'combobox "Model"',
        'textbox "Prompt"',
        'button "Generate"',
        'spinbutton "Images (1–12)"',
        'combobox "Resolution"',
        'combobox "Aspect ratio"',
        'spinbutton "Seed"',
        'spinbutton "Steps"',
        'radio "IP-Adapter"',
        'slider "Reference strength"',
        'button "Describe reference into prompt"',
        'textbox "New pin name"',
    ):
        assert needed in snapshot, f"{needed} not in:\n{snapshot}"
    unnamed = [line for line in snapshot.splitlines() if UNNAMED.match(line)]
    assert not unnamed, unnamed
    # Tab from the top of the page through the prompt bar: every stop is labelled and
    # drawn with a focus ring.
    page.get_by_role("link", name="Skip to content").focus()
    seen = []
    for _ in range(80):
        page.keyboard.press("Tab")
        stop = page.evaluate(
            """() => {
              const el = document.activeElement;
              const style = getComputedStyle(el);
              const name = el.getAttribute('aria-label') || (el.labels && el.labels[0]
                && el.labels[0].textContent) || el.textContent || '';
              return {tag: el.tagName, name: name.trim(), outline: style.outlineStyle,
                      width: parseFloat(style.outlineWidth), id: el.id};
            }"""
        )
        if stop["tag"] == "BODY":  # past the last control: the page's tab order ends
            break
        seen.append(stop)
        assert stop["name"], stop
        assert stop["outline"] != "none" and stop["width"] >= 2, stop
    ids = {s["id"] for s in seen}
    assert {"model", "prompt", "generate", "count", "seed"} <= ids, seen
    shot(page)
    page.locator("#advanced summary").click()
    page.locator("#additions summary").click()


# The prompt bar


def test_each_model_kind_shows_its_features_and_cost(page: Page, studio_styles, shot):
    features = page.locator("#features")
    cost = page.locator("#cost")
    unavailable = page.locator("#unavailable")
    page.get_by_label("Images (1–12)").fill("3")

    pick(page, "tiny-sd15 (sd15)")
    expect(features).to_contain_text("tiny-sd15 (base model)")
    expect(features).to_contain_text("IP-Adapter reference")
    expect(cost).to_contain_text("3 credits (1 × 3)")
    expect(page.get_by_label("Negative prompt")).to_be_enabled()
    page.get_by_label("Resolution").select_option("256px")
    expect(cost).to_contain_text("6 credits (2 × 3)")
    page.get_by_label("Resolution").select_option("128px")
    expect(page.get_by_label("Steps")).to_have_attribute("placeholder", "4")

    pick(page, "tiny-flux2-klein")
    expect(features).to_contain_text("tiny-flux2-klein (base model)")
    expect(features).not_to_contain_text("IP-Adapter")
    expect(page.get_by_label("Guidance")).to_be_disabled()
    expect(page.get_by_label("Negative prompt")).to_be_disabled()
    expect(unavailable).to_contain_text("takes no guidance value")
    expect(unavailable).to_contain_text("does not offer IP-Adapter reference")

    pick(page, "tiny-flux1 (flux1)")
    expect(page.get_by_label("Guidance")).to_be_enabled()
    expect(page.get_by_label("Guidance")).to_have_attribute("placeholder", "3.5")

    pick(page, "Ink")
    expect(features).to_contain_text("(artist style)")
    expect(page.locator("#terms")).to_contain_text("watermarked until licensed")
    expect(page.get_by_label("Style strength")).to_be_enabled()
    default = f"{studio_styles['artist']['default_strength']:g}"
    expect(page.get_by_label("Style strength")).to_have_attribute("placeholder", default)

    pick(page, "My private glaze")
    expect(features).to_contain_text("(private style)")

    pick(page, "Agentic on tiny-sd15")
    expect(features).to_contain_text("(agentic)")
    expect(cost).to_contain_text("flat per agentic generation")
    expect(page.get_by_label("Scheduler")).to_be_disabled()

    pick(page, "tiny-sd15 (sd15)")
    expect(page.get_by_label("Style strength")).to_be_disabled()
    page.get_by_label("Images (1–12)").fill("13")
    expect(cost).to_contain_text("from 1 to 12")
    expect(page.get_by_role("button", name="Generate")).to_be_disabled()
    page.get_by_label("Images (1–12)").fill("3")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    shot(page)


def test_markup_in_a_style_name_or_prompt_shows_as_text(page: Page, shot):
    option = page.get_by_label("Model", exact=True).locator("option", has_text="Ink")
    assert "<script>" in option.inner_text() and "<b>wash</b>" in option.inner_text()
    pick(page, "tiny-sd15 (sd15)")
    generate(
        page, 1, prompt='<img src=x onerror="window.__pwned=2"><script>window.__pwned=3</script>'
    )
    batch = page.locator(".batch").first
    expect(batch.locator(".batch-prompt")).to_contain_text("<script>window.__pwned=3</script>")
    assert batch.locator("script, img[src='x']").count() == 0
    assert page.evaluate("window.__pwned") is None
    shot(page)


# Generating


def test_generate_three_images_and_reuse_a_seed(page: Page, studio_http, shot):
    pick(page, "tiny-sd15 (sd15)")
    # The Studio asks for a job (Prefer: respond-async) and reads its event stream with
    # fetch() (the key in its Authorization header), not EventSource.
    is_post = lambda r: r.url.endswith("/v1/generations")  # noqa: E731
    with (
        page.expect_response(is_post) as posted,
        page.expect_response(lambda r: "/v1/jobs/" in r.url and r.url.endswith("/events")) as ev,
    ):
        ids = generate(page, 3, prompt="a harbour at dawn")
    assert posted.value.request.headers["prefer"] == "respond-async"
    assert posted.value.status == 202
    job_id = posted.value.json()["id"]
    assert ev.value.url.endswith(f"/v1/jobs/{job_id}/events")
    assert ev.value.headers["content-type"].startswith("text/event-stream")
    assert ev.value.request.headers["authorization"].startswith("Bearer ")
    assert ev.value.request.resource_type == "fetch"
    assert studio_http.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
    assert len(set(ids)) == 3
    seeds = [studio_http.get(f"/v1/assets/{i}").json()["seed"] for i in ids]
    assert seeds == sorted(seeds) and seeds[2] - seeds[0] == 2  # image i uses seed + i
    for asset_id in ids:  # shown through blob: URLs
        assert card(page, asset_id).locator("img").get_attribute("src").startswith("blob:")
    card(page, ids[0]).get_by_role("button", name="Reuse seed").click()
    expect(page.get_by_label("Seed", exact=True)).to_have_value(str(seeds[0]))
    # Ctrl+Enter generates from the keyboard: the same request with that seed gives the
    # same pixels (the same n too: a batch of another size may round differently).
    page.get_by_label("Prompt", exact=True).focus()
    before = page.locator(".batch").count()
    page.keyboard.press("Control+Enter")
    expect(page.locator(".batch")).to_have_count(before + 1)
    again = page.locator(".batch").first.locator(".image-card")
    expect(again).to_have_count(3, timeout=GENERATE_TIMEOUT_MS)
    reused = [c.get_attribute("data-asset-id") for c in again.all()]
    assert [c.get_attribute("data-seed") for c in again.all()] == [str(s) for s in seeds]
    for new, old in zip(reused, ids, strict=True):
        np.testing.assert_array_equal(preview(studio_http, new), preview(studio_http, old))
    page.get_by_label("Seed", exact=True).fill("")
    shot(page)


# Records what was ever added to the results while a generation ran (an event's text or
# preview is replaced within milliseconds by the next, then by the finished image).
OBSERVE = """() => {
  window.__seen = {texts: [], previews: 0};
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== 1) continue;
        window.__seen.texts.push(node.textContent);
        if (node.matches("img.step-preview")) {
          window.__seen.previews += 1;
          window.__seen.previewSrc = node.src;
        }
      }
    }
  }).observe(document.getElementById("results"), {childList: true, subtree: true});
}"""


def test_queue_position_and_step_previews_show_while_a_job_runs(page: Page, shot):
    # The job's real event stream, led by a queue report and a step preview in the
    # shapes the jobs API sends (progress queue_position/images_ahead; event preview).
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (250, 120, 20)).save(out, "WEBP")
    webp = base64.b64encode(out.getvalue()).decode()
    lead = (
        'event: progress\ndata: {"queue_position": 2, "images_ahead": 5, "eta_s": 3.2}\n\n'
        f'event: preview\ndata: {{"step": 2, "total": 4, "image": 0, "webp": "{webp}"}}\n\n'
    ).encode()

    def lead_with_queue_and_preview(route) -> None:
        real = route.fetch()
        route.fulfill(response=real, body=lead + real.body())

    pick(page, "tiny-sd15 (sd15)")
    page.evaluate(OBSERVE)
    page.route("**/v1/jobs/*/events", lead_with_queue_and_preview)
    try:
        generate(page, 1, prompt="a queue of kilns")
    finally:
        page.unroute("**/v1/jobs/*/events", lead_with_queue_and_preview)
    seen = page.evaluate("window.__seen")
    assert any("Queued: 2 request(s), 5 image(s) ahead" in t for t in seen["texts"]), seen
    assert seen["previews"] == 1 and seen["previewSrc"].startswith("blob:")
    shot(page)


def reference_png(color: tuple[int, int, int], size: int = 128) -> dict:
    image = Image.new("RGB", (size, size), color)
    for x in range(0, size, 16):  # some structure for image-to-prompt and the pins
        image.paste((255 - color[0], color[1], 255 - color[2]), (x, x, x + 16, x + 16))
    out = io.BytesIO()
    image.save(out, "PNG")
    return {"name": f"ref-{color[0]}.png", "mimeType": "image/png", "buffer": out.getvalue()}


def open_additions(page: Page) -> None:
    additions = page.locator("#additions")
    if additions.get_attribute("open") is None:
        additions.locator("summary").click()


# A file dropped on the drop zone, or pasted on the page, as a person would.
DROP_OR_PASTE = """([b64, how]) => {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
  const data = new DataTransfer();
  data.items.add(new File([bytes], `${how}.png`, {type: "image/png"}));
  const init = {bubbles: true, cancelable: true};
  if (how === "drop") {
    const zone = document.querySelector(".dropzone");
    zone.dispatchEvent(new DragEvent("drop", {...init, dataTransfer: data}));
  } else {
    document.body.dispatchEvent(new ClipboardEvent("paste", {...init, clipboardData: data}));
  }
}"""


def test_a_reference_and_image_to_prompt(page: Page, studio_http, shot):
    pick(page, "tiny-sd15 (sd15)")
    open_additions(page)
    describe = page.get_by_role("button", name="Describe reference into prompt")
    expect(describe).to_be_disabled()
    # Dropped and pasted images become the reference (one at a time for a base model).
    png = base64.b64encode(reference_png((90, 90, 200))["buffer"]).decode()
    for how in ("drop", "paste"):
        page.evaluate(DROP_OR_PASTE, [png, how])
        expect(page.get_by_role("img", name=f"Reference 1: {how}.png")).to_be_visible()
        expect(page.get_by_role("img", name=re.compile("Reference 2"))).to_have_count(0)
    page.get_by_label("Reference image file").set_input_files(reference_png((200, 40, 40)))
    expect(page.get_by_role("img", name=re.compile("Reference 1"))).to_be_visible()
    assert (
        page.get_by_role("img", name=re.compile("Reference 1"))
        .get_attribute("src")
        .startswith("blob:")
    )
    page.get_by_label("Prompt", exact=True).fill("a poster")
    page.get_by_label("Extract").select_option("colour_grading")
    page.get_by_label("Creative").check()
    describe.click()
    prompt = page.get_by_label("Prompt", exact=True)
    expect(prompt).not_to_have_value("a poster")
    words = prompt.input_value()
    assert words.startswith("a poster, ") and len(words) > len("a poster, ")
    # The words are editable and generate with the reference (img2img).
    prompt.fill(words + ", grainy")
    page.get_by_label("Reference strength").fill("0.5")
    page.get_by_label("Images (1–12)").fill("1")
    page.get_by_role("button", name="Generate").click()
    made = page.locator(".batch").first.locator(".image-card")
    expect(made).to_have_count(1, timeout=GENERATE_TIMEOUT_MS)
    asset = studio_http.get(f"/v1/assets/{made.get_attribute('data-asset-id')}").json()
    assert asset["prompt"].endswith(", grainy")
    assert asset["params"]["task"] == "image_to_image", asset["params"]
    assert asset["params"]["strength"] == 0.5
    page.get_by_role("button", name="Remove reference 1").click()
    shot(page)


def test_create_a_pin_and_use_it(page: Page, studio_http, shot):
    pick(page, "tiny-sd15 (sd15)")
    open_additions(page)
    page.get_by_label("New pin name").fill("Mara <i>the potter</i>")
    page.get_by_label("New pin images (1–4)").set_input_files(
        [reference_png((30, 120, 200)), reference_png((40, 140, 90))]
    )
    page.get_by_role("button", name="Create pin from files").click()
    use = page.get_by_label("Use pin Mara <i>the potter</i> (character)")
    expect(use).to_be_checked()
    pins = studio_http.get("/v1/pins").json()["data"]
    pin = next(p for p in pins if p["name"] == "Mara <i>the potter</i>")
    assert pin["images"] == 2
    page.get_by_label("Images (1–12)").fill("1")
    page.get_by_label("Prompt", exact=True).fill("Mara at the wheel")
    with page.expect_response(lambda r: r.url.endswith("/v1/generations")) as answer:
        page.get_by_role("button", name="Generate").click()
    assert answer.value.request.post_data_json["pins"] == [pin["id"]]
    assert answer.value.status == 202  # a job (Prefer: respond-async)
    made = page.locator(".batch").first.locator(".image-card")
    expect(made).to_have_count(1, timeout=GENERATE_TIMEOUT_MS)
    use.uncheck()
    shot(page)


def test_an_agentic_generation_from_a_gallery_reference(page: Page, studio_http, shot):
    pick(page, "Agentic on tiny-sd15")
    open_additions(page)
    page.get_by_label("Images (1–12)").fill("1")
    page.get_by_label("Prompt", exact=True).fill("a quiet studio")
    page.get_by_role("button", name="Generate").click()
    expect(page.locator(".form-status").get_by_role("alert")).to_contain_text(
        "needs 1–10 reference images"
    )
    page.get_by_role("button", name="Pick from gallery").click()
    dialog = page.get_by_role("dialog", name="Pick reference images")
    first = dialog.get_by_role("checkbox").first
    first.check()
    picked = re.search(r"\((ast_[0-9a-f]+)\)", first.get_attribute("aria-label")).group(1)
    dialog.get_by_role("button", name="Use selected").click()
    expect(page.get_by_role("img", name=f"Reference 1: asset {picked}")).to_be_visible()
    balance = studio_http.get("/v1/credits").json()["balance"]
    with page.expect_response(lambda r: r.url.endswith("/v1/agentic/generations")) as answer:
        page.get_by_role("button", name="Generate").click()
    assert answer.value.request.post_data_json["references"] == [{"asset_id": picked}]
    made = page.locator(".batch").first.locator(".image-card")
    expect(made).to_have_count(1, timeout=GENERATE_TIMEOUT_MS)
    flat = studio_http.get("/v1/prices").json()["operations"]["agentic"]
    assert studio_http.get("/v1/credits").json()["balance"] == balance - flat
    asset = studio_http.get(f"/v1/assets/{made.get_attribute('data-asset-id')}").json()
    assert asset["kind"] == "agentic"
    page.get_by_role("button", name="Remove reference 1").click()
    shot(page)
    pick(page, "tiny-sd15 (sd15)")


# Per-image actions

MAGIC = {
    "png": lambda b: b.startswith(b"\x89PNG"),
    "jpeg": lambda b: b.startswith(b"\xff\xd8"),
    "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "svg": lambda b: b"<svg" in b[:400],
}


def download(page: Page, the_card, fmt: str, long_side: int | None = None) -> bytes:
    the_card.get_by_label("Download format").select_option(fmt)
    the_card.get_by_label(re.compile("Long side")).fill(str(long_side) if long_side else "")
    with page.expect_download() as info:
        the_card.get_by_role("button", name="Download").click()
    return Path(info.value.path()).read_bytes()


def test_upscale_remove_background_and_download_each_format(page: Page, studio_http, shot):
    pick(page, "tiny-sd15 (sd15)")
    [asset_id] = generate(page, 1, prompt="a teapot on a table")
    the_card = card(page, asset_id)
    for fmt, check in MAGIC.items():
        data = download(page, the_card, fmt)
        assert check(data), (fmt, data[:16])
    with Image.open(io.BytesIO(download(page, the_card, "png", 7680 // 30))) as big:
        assert max(big.size) == 256
    # Beyond 7680 the field refuses (its max), so nothing is asked of the server.
    assert the_card.get_by_label(re.compile("Long side")).get_attribute("max") == "7680"

    cards = page.locator(".image-card")
    count = cards.count()
    the_card.get_by_role("button", name="Upscale ×2").click()
    expect(cards).to_have_count(count + 1, timeout=GENERATE_TIMEOUT_MS)
    upscaled = cards.first.get_attribute("data-asset-id")
    meta = studio_http.get(f"/v1/assets/{upscaled}").json()
    assert (meta["width"], meta["parent_id"]) == (256, asset_id)
    the_card.get_by_role("button", name="Remove background").click()
    expect(cards).to_have_count(count + 2, timeout=GENERATE_TIMEOUT_MS)
    cut = cards.first.get_attribute("data-asset-id")
    assert studio_http.get(f"/v1/assets/{cut}").json()["parent_id"] == asset_id
    expect(the_card.locator(".card-status")).to_contain_text("Background removed")
    shot(page)


def test_a_style_image_is_watermarked_until_licensed(page: Page, studio_http, shot):
    pick(page, "Ink")
    [asset_id] = generate(page, 1, prompt="a heron in mist")
    the_card = card(page, asset_id)
    price = studio_http.get("/v1/prices").json()["operations"]["license"]
    expect(the_card.locator(".watermark-note")).to_contain_text("Watermarked preview")
    # The original is refused until licensed; the error offers the license.
    the_card.get_by_label("Download format").select_option("png")
    the_card.get_by_role("button", name="Download").click()
    alert = the_card.get_by_role("alert")
    expect(alert).to_contain_text("license")
    balance = studio_http.get("/v1/credits").json()["balance"]
    alert.get_by_role("button", name=f"Buy license ({price} credits)").click()
    expect(the_card.get_by_role("button", name="View certificate")).to_be_visible()
    assert studio_http.get("/v1/credits").json()["balance"] == balance - price
    assert studio_http.get(f"/v1/assets/{asset_id}").json()["license"]["state"] == "licensed"
    the_card.get_by_role("button", name="View certificate").click()
    dialog = page.get_by_role("dialog", name="License certificate")
    sha = studio_http.get(f"/v1/assets/{asset_id}").json()["sha256"]
    expect(dialog).to_contain_text(sha)
    shot(page)
    dialog.get_by_role("button", name="Close").click()
    original = studio_http.get(f"/v1/assets/{asset_id}/original")
    assert original.status_code == 200
    np.testing.assert_array_equal(pixels(download(page, the_card, "png")), pixels(original.content))
    pick(page, "tiny-sd15 (sd15)")


# Gallery and credits


def test_gallery_filters_pages_and_deletes(page: Page, studio_http, shot):
    page.get_by_role("link", name="Gallery").click()
    grid = page.locator("#gallery-grid .image-card")
    expect(grid.first).to_be_visible()

    def shown() -> list[str]:
        page.locator(".gallery-status").filter(has_not_text="Loading").wait_for()
        return [c.get_attribute("data-asset-id") for c in grid.all()]

    def listed(**params) -> list[str]:
        body = studio_http.get("/v1/assets", params={"limit": 12, **params}).json()
        return [a["id"] for a in body["data"]]

    page.get_by_label("Kind").select_option("artist_style")
    expect(grid).to_have_count(len(listed(kind="artist_style")))
    assert shown() == listed(kind="artist_style")
    page.get_by_label("License").select_option("licensed")
    expect(grid).to_have_count(1)
    assert shown() == listed(kind="artist_style", license="licensed")
    page.get_by_label("Kind").select_option("")
    page.get_by_label("License").select_option("free")
    page.get_by_label("Model", exact=True).select_option("tiny-sd15")
    expect(grid).to_have_count(len(listed(license="free", model="tiny-sd15")))
    # Cursor paging: the whole list takes more than one page of 12.
    page.get_by_label("License").select_option("")
    page.get_by_label("Model", exact=True).select_option("")
    total = len(studio_http.get("/v1/assets", params={"limit": 100}).json()["data"])
    assert total > 12
    expect(grid).to_have_count(12)
    page.get_by_role("button", name="Load more").click()
    expect(grid).to_have_count(min(total, 24))
    # Delete the newest.
    newest = grid.first.get_attribute("data-asset-id")
    grid.first.get_by_role("button", name="Delete").click()
    expect(page.locator(f'[data-asset-id="{newest}"]')).to_have_count(0)
    assert studio_http.get(f"/v1/assets/{newest}").status_code == 404
    shot(page)


def test_credits_show_balance_held_and_ledger(page: Page, studio_http, shot):
    page.get_by_role("link", name="Credits").click()
    statement = studio_http.get("/v1/credits", params={"limit": 50}).json()
    expect(page.locator("#credit-balance")).to_have_text(f"{statement['balance']} credits")
    expect(page.locator("#credit-held")).to_have_text(f"{statement['held']} credits")
    rows = page.get_by_role("table", name="Ledger entries").locator("tbody tr")
    expect(rows).to_have_count(len(statement["entries"]))
    kinds = {e["kind"] for e in statement["entries"]}
    for kind in kinds:
        expect(rows.filter(has_text=kind).first).to_be_visible()
    expect(page.locator("#balance")).to_contain_text(f"{statement['balance']} credits")
    shot(page)
    page.get_by_role("link", name="Create").click()


# Errors, as the server's error object says


def test_a_wrong_key_and_too_few_credits_show_the_error_object(
    browser: Browser, studio_server, studio_key, shot
):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(studio_server.url + "/")
        page.get_by_label("API key").fill("kiln_not-a-real-key")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_contain_text("401")
        assert page.evaluate("sessionStorage.length") == 0
        poor = studio_server.tenant("studio poor", 1)
        page.get_by_label("API key").fill(poor)
        page.get_by_role("button", name="Sign in").click()
        pick(page, "tiny-sd15 (sd15)")
        page.get_by_label("Prompt", exact=True).fill("two images for one credit")
        page.get_by_label("Images (1–12)").fill("2")
        expect(page.locator("#cost")).to_contain_text("2 credits (1 × 2) · Balance: 1")
        page.get_by_role("button", name="Generate").click()
        alert = page.locator(".batch").first.get_by_role("alert")
        expect(alert).to_contain_text("402")
        expect(alert).to_contain_text("Needed: 2 credits · available: 1 credits")
        shot(page)
        # Every request of the module went by: no key in the server's log.
        log = studio_server.log.read_text(errors="replace")
        assert studio_key not in log and poor not in log
    finally:
        context.close()
