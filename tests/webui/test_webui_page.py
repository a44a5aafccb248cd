"""The built page (no browser): every field of the seed is on it by label, in English and Chinese, and a
parameter declared anywhere appears without UI code."""

import re

import pytest

pytest.importorskip("gradio")

from tuneforge.config import loader, schema  # noqa: E402

# The seed's fields as its notes name them (English, and the Chinese name where the seed gives one).
SEED_FIELDS = [
    ("Model name", "模型名称"), ("Model path", "模型路径"), ("Finetuning method", "微调方法"),
    ("Checkpoint path", "检查点路径"), ("Quantization bit", "量化"), ("Quantization method", None),
    ("Prompt template", None), ("RoPE scaling", None), ("Booster", None),
    ("Stage", None), ("Data dir", "数据目录"), ("Dataset", "数据集"), ("Learning rate", "学习率"), ("Epochs", "训练轮数"),
    ("Maximum gradient norm", "最大梯度范数"), ("Max samples", "最大样本数"), ("Compute type", "计算类型"),
    ("Cutoff length", "截断长度"), ("Batch size", "批量大小"), ("Gradient accumulation", "梯度累积"),
    ("Val size", "验证集大小"), ("LR scheduler", None),
    ("Logging steps", None), ("Save steps", None), ("Warmup steps", None), ("NEFTune Alpha", None), ("Optimizer", None),
    ("Pack sequences", None), ("Use neat packing", None), ("Train on prompt", None), ("Mask history", None),
    ("Resize token embeddings", None), ("Enable LLaMA Pro", None), ("Enable S^2 Attention", None),
    ("Enable external logger", None),
    ("Trainable layers", None), ("Trainable modules", None), ("Extra modules (optional)", None),
    ("LoRA rank", None), ("LoRA alpha", None), ("LoRA dropout", None), ("LoRA+ LR ratio", None),
    ("Create new adapter", None), ("Use rslora", None), ("Use DoRA", None), ("Use PiSSA", None),
    ("LoRA modules (optional)", None), ("Additional modules (optional)", None),
    ("Beta value", None), ("Ftx gamma", None), ("Loss type", None), ("Reward model", None), ("Score norm", None),
    ("Whiten rewards", None),
    ("Use GaLore", None), ("GaLore rank", None), ("Update interval", None), ("GaLore scale", None),
    ("GaLore modules", None),
    ("Use BAdam", None), ("BAdam mode", None), ("Switch mode", None), ("Switch interval", None), ("Update ratio", None),
    ("Output dir", None), ("Config path", None), ("Device count", None), ("DeepSpeed stage", None),
    ("Enable offload", None),
]
PROBE = "webui_probe_parameter"


def normal(text):
    return re.sub(r"\s+", " ", str(text or "")).strip().lower()


def page_labels(app):
    """Labels of every component of the built Blocks (what a user reads on the page)."""
    return {normal(getattr(block, "label", None)) for block in app.blocks.values()} - {""}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tuneforge.webui.app import build_app

    schema.declare(PROBE, "int", 3, "A parameter declared after the UI was written.", "train")
    try:
        app, page = build_app(str(tmp_path_factory.mktemp("saves")))
    finally:
        del schema._REGISTRY[PROBE]
        loader._declared_defaults.cache_clear()
    return app, page


def test_every_seed_field_is_on_the_page_by_label(built):
    app, _ = built
    labels = page_labels(app)
    missing = [english for english, _ in SEED_FIELDS if normal(english) not in labels]
    assert missing == []


def test_chinese_labels_follow_the_seed(built):
    app, page = built
    updates = page.relabel("zh")
    try:
        chinese = {normal(update.get("label") or update.get("value")) for update in updates}
    finally:
        page.relabel("en")
    for _, name in SEED_FIELDS:
        if name is not None:
            assert any(normal(name) in label for label in chinese), name
    assert "学习率" in chinese and "训练" in chinese  # a field and a tab


def test_a_new_declaration_appears_without_ui_code_and_unbuilt_features_are_disabled(built):
    app, _ = built
    by_id = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    probe = by_id[f"tf-{PROBE}"]
    assert (probe.value, probe.label, probe.info) == (3, "Webui probe parameter",
                                                      "A parameter declared after the UI was written.")
    for name, param in schema.all_params().items():
        if f"tf-{name}" in by_id:
            assert by_id[f"tf-{name}"].interactive is param.implemented, name
    unbuilt = [name for name, param in schema.all_params().items() if not param.implemented and f"tf-{name}" in by_id]
    assert unbuilt and all("coming" in by_id[f"tf-{name}"].info for name in unbuilt)  # shown, not offered yet


def test_declared_switches_appear_in_the_train_tab(built):
    app, _ = built
    by_id = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    assert (by_id["tf-padding_free"].value, by_id["tf-trace_samples"].value) == (True, False)
    assert by_id["tf-padding_free"].label == "Padding free" and by_id["tf-trace_samples"].interactive


def test_chat_model_load_validates_first():
    from tuneforge.errors import ConfigError, UserError
    from tuneforge.webui.chat_tab import ChatHolder

    with pytest.raises(ConfigError, match="no_such_template"):
        ChatHolder().load({"model_name_or_path": "m", "template": "no_such_template"})
    with pytest.raises(UserError, match="model path is empty"):
        ChatHolder().load({})


def test_webui_command_serves_on_the_documented_address(monkeypatch, tmp_path, capsys):
    from tuneforge import cli
    from tuneforge.webui import app as webui_app

    launched = []

    class FakeApp:
        def queue(self):
            return self

        def launch(self, **kwargs):
            launched.append({key: kwargs[key] for key in ("server_name", "server_port", "share", "auth")})

    monkeypatch.setattr(webui_app, "build_app", lambda root, access: (FakeApp(), None))
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.delenv("TUNEFORGE_WEBUI_AUTH", raising=False)
    logins = tmp_path / "logins"
    logins.write_text("ada:pw1\n\nbob:pw:2\n")
    assert cli.main(["webui"]) == 0
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7000")
    assert cli.main(["webui", "--auth-file", str(logins)]) == 0
    assert cli.main(["webui", "--host", "localhost", "--port", "8000", "--share", "--insecure-no-auth"]) == 0
    monkeypatch.setenv("TUNEFORGE_WEBUI_AUTH", "eve:pw3")
    assert cli.main(["webui", "--host", "10.0.0.5"]) == 0
    assert launched == [{"server_name": "127.0.0.1", "server_port": 7860, "share": False, "auth": None},
                        {"server_name": "0.0.0.0", "server_port": 7000, "share": False,
                         "auth": [("ada", "pw1"), ("bob", "pw:2")]},
                        {"server_name": "localhost", "server_port": 8000, "share": True, "auth": None},
                        {"server_name": "10.0.0.5", "server_port": 7000, "share": False, "auth": [("eve", "pw3")]}]


@pytest.mark.parametrize("args, reach", [(["--share"], "a public --share link"),
                                         (["--host", "0.0.0.0"], "--host 0.0.0.0"),
                                         (["--host", "myserver.lan"], "--host myserver.lan")])
def test_webui_refuses_to_serve_others_without_a_login(monkeypatch, capsys, args, reach):
    from tuneforge import cli
    from tuneforge.webui import app as webui_app

    monkeypatch.setattr(webui_app, "build_app", lambda *a, **k: pytest.fail("built before the refusal"))
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("TUNEFORGE_WEBUI_AUTH", raising=False)
    assert cli.main(["webui", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: refusing to serve the web UI on {reach} without a login: anyone who reaches it could "
                   "start trainings and write files on this machine. Add --auth-file FILE (one user:password a "
                   "line) or set TUNEFORGE_WEBUI_AUTH=user:password, or pass --insecure-no-auth to serve it open "
                   "anyway.")


@pytest.mark.parametrize("args, message", [
    (["--auth", "ada"], "error: --auth: expected user:password (both non-empty), got 'ada'"),
    (["--auth", "ada:"], "error: --auth: expected user:password (both non-empty), got 'ada:***'"),
    (["--allow-key", "stage"], "error: --allow-key stage: only trust_remote_code can be allowed (every other key "
                               "is always allowed)"),
])
def test_webui_login_and_key_options_are_checked(monkeypatch, capsys, args, message):
    from tuneforge import cli
    from tuneforge.webui import app as webui_app

    monkeypatch.setattr(webui_app, "build_app", lambda *a, **k: pytest.fail("built before the refusal"))
    monkeypatch.delenv("TUNEFORGE_WEBUI_AUTH", raising=False)
    assert cli.main(["webui", *args]) == 2
    assert capsys.readouterr().err.strip() == message


def test_auth_file_lines_are_named_when_wrong(tmp_path):
    from tuneforge.errors import UserError
    from tuneforge.webui.serving import read_logins

    path = tmp_path / "logins"
    path.write_text("# comment\nada:pw\nbob\n")
    with pytest.raises(UserError, match=rf"^--auth-file {path} line 3: expected user:password \(both non-empty\), "
                                        "got 'bob'$"):
        read_logins(None, str(path), {})
    path.write_text("# nobody\n")
    with pytest.raises(UserError, match="no user:password line in it"):
        read_logins(None, str(path), {})


def test_the_rlhf_panel_shows_every_grpo_key_and_the_rollout_sampling(built):
    """ppo and grpo read their rlhf keys and the generate group's sampling settings: the Train tab must show
    them all (tf-<name>: the chat and eval tabs' copies are tf-chat-<name> / tf-eval-<name>)."""
    app, _ = built
    by_id = {block.elem_id: block for block in app.blocks.values() if getattr(block, "elem_id", None)}
    wanted = [name for name, param in schema.all_params().items() if param.group in ("rlhf", "generate")]
    assert {"num_generations", "reward_funcs", "dynamic_sampling", "temperature", "top_k"} <= set(wanted)
    assert [name for name in wanted if f"tf-{name}" not in by_id] == []
    assert by_id["tf-temperature"].interactive and by_id["tf-num_generations"].value == 8
