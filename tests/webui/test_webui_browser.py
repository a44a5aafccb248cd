"""The web UI in headless Chromium, as a user: set the fields, preview the dataset, train a tiny model,
watch progress reach 100% and the loss plot appear, then chat with the result. A screenshot is kept in
tests/artifacts/.

Needs Debian's chromium (/usr/bin/chromium, installed by .ci/run); skips with the reason when absent.
"""

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DEMO_DATA = Path(__file__).resolve().parents[2] / "src" / "tuneforge" / "demo" / "data"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no chromium at {CHROMIUM} (.ci/run installs "
                                "it: apt-get install -y chromium)")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tuneforge.testing.tiny_model import build_tiny_model
    from tuneforge.webui.access import Access
    from tuneforge.webui.app import CSS, build_app

    root = tmp_path_factory.mktemp("webui")
    build_tiny_model(root / "model", arch="llama", hidden=32, layers=1, heads=2, kv_heads=1, vocab_size=600)
    shutil.copytree(DEMO_DATA, root / "data")
    app, _ = build_app(str(root / "saves"), access=Access.default(str(root / "saves"), [str(root)]))
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=CSS, quiet=True)
    yield f"http://127.0.0.1:{port}", root
    app.close()


def fill(page, elem_id, value):
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(str(value))
    box.press("Tab")


def pick(page, elem_id, value):
    """Choose (or type) a drop-down value."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(str(value))
    # the exact entry, not the first one the filter leaves (CSS: role queries walk the whole large page)
    option = page.locator(f"#{elem_id} li[role='option'][aria-label={json.dumps(str(value))}]")
    if option.count():
        option.first.click()
    else:
        box.press("Enter")
    page.keyboard.press("Escape")


def test_train_watch_and_chat_in_the_browser(server):
    url, root = server
    output_dir = root / "saves" / "tiny" / "lora" / "run1"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(30_000)
        page.goto(url)
        # 1. fields: a relative data dir lists its datasets
        fill(page, "tf-model_name_or_path", root / "model")
        pick(page, "tf-template", "qwen")
        assert page.locator("#tf-template input").first.input_value() == "qwen"
        fill(page, "tf-dataset_dir", os.path.relpath(root / "data"))
        pick(page, "tf-dataset", "demo_alpaca")
        fill(page, "tf-cutoff_len", 64)
        fill(page, "tf-max_samples", 8)
        fill(page, "tf-per_device_train_batch_size", 4)
        fill(page, "tf-num_train_epochs", 2)
        fill(page, "tf-learning_rate", 0.01)
        fill(page, "tf-logging_steps", 1)
        fill(page, "tf-output_dir", output_dir)
        # 2. dataset preview, trained tokens highlighted
        page.click("#tf-preview-data")
        page.wait_for_selector("#tf-preview mark.tf-trained")
        # Save config, then Load config: every loaded value lands in its field (a str in a number field
        # made Gradio refuse the whole load: "Could not postprocess output component")
        fill(page, "tf-config_path", root / "saves" / "browser.yaml")
        page.click("#tf-save-config")
        page.wait_for_selector("#tf-train-message:has-text('saved')")
        fill(page, "tf-learning_rate", 0.5)  # changed after saving: Load brings 0.01 back
        page.click("#tf-load-config")
        page.wait_for_selector("#tf-train-message:has-text('loaded')")
        assert float(page.locator("#tf-learning_rate input").first.input_value()) == 0.01
        assert page.locator("#tf-device_count input").first.input_value() == "1"
        # 3. start
        page.click("#tf-train-start")
        page.wait_for_selector("#tf-train-status[data-status='running']")
        # closing the browser page neither stops nor stalls training; a new page shows the same job
        page.close()
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(30_000)
        page.goto(url)
        # 4. progress reaches 100% and the loss curve is drawn
        page.wait_for_selector("#tf-train-status[data-status='finished'][data-percent='100']", timeout=120_000)
        assert "step 4/4" in page.inner_text("#tf-train-progress")
        page.wait_for_selector("#tf-train-loss canvas, #tf-train-loss svg")
        page.screenshot(path=str(ARTIFACTS / "webui_train.png"), full_page=True)
        print(f"screenshot: {ARTIFACTS / 'webui_train.png'}")
        # 5. chat with the trained adapter
        page.click("#tf-tab-chat-button")
        fill(page, "tf-model_name_or_path", root / "model")  # the new page starts from a fresh form
        pick(page, "tf-template", "qwen")
        pick(page, "tf-checkpoint_path", output_dir)
        page.click("#tf-chat-load")
        page.wait_for_selector("#tf-chat-status:has-text('model loaded')", timeout=60_000)
        fill(page, "tf-chat-max_new_tokens", 8)
        page.locator("#tf-chat-message textarea").fill("Hello")
        page.click("#tf-chat-send")
        page.wait_for_function("(() => { const m = document.querySelectorAll('#tf-chatbot .message');"
                               " return m.length >= 2 && m[m.length - 1].innerText.trim().length > 0; })()")
        page.screenshot(path=str(ARTIFACTS / "webui_chat.png"), full_page=True)
        browser.close()
    assert (output_dir / "adapter_config.json").exists()
