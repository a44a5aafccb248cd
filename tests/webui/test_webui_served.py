"""The web UI as served, called the way any client on the network can: through Gradio's HTTP API.

A login is required for every call once one is configured; Load config puts every loaded value into its
component in the type that component holds (a saved config comes back exactly, and so does every
LLaMA-Factory example file); no handler reads, writes or starts anything outside the allowed folders, and
"extra arguments" pass the same checks as a YAML file.
"""

import os
import socket

import httpx
import pytest
import yaml

gr = pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

from shared_paths import LF_EXAMPLES  # noqa: E402
from tuneforge.webui import form  # noqa: E402
from tuneforge.webui.access import Access  # noqa: E402
from tuneforge.webui.jobs import JOBS  # noqa: E402

LOGIN = ("ada", "s3cret:with:colons")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tuneforge.webui.app import build_app, serve
    from tuneforge.webui.serving import exposure_from

    root = tmp_path_factory.mktemp("saves")
    outside = tmp_path_factory.mktemp("outside")
    logins = root / "logins.txt"
    logins.write_text(f"# who may log in\n{LOGIN[0]}:{LOGIN[1]}\n")
    app, page = build_app(str(root), access=Access.default(str(root)))
    port = free_port()
    serve(app, exposure_from("127.0.0.1", False, None, str(logins), environ={}), port,
          prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    client = Client(url, auth=LOGIN, verbose=False)
    yield app, client, url, root, outside
    client.close()
    app.close()


def endpoint(app, name, index=0):
    """(api name, input field names) of the `index`-th handler called `name`; a field's name is its elem_id
    without the tf- prefix (tf-chat-temperature: the chat tab's temperature)."""
    functions = [fn for fn in app.fns.values() if fn.name == name]
    fn = functions[index]
    names = [block.elem_id.removeprefix("tf-").removeprefix("chat-") for block in fn.inputs]
    return "/" + fn.api_name, names, fn


def call(served, name, changes, index=0):
    """Call handler `name` over HTTP with every input at its page value except `changes`."""
    app, client, *_ = served
    api_name, names, fn = endpoint(app, name, index)
    unknown = set(changes) - set(names)
    assert not unknown, unknown
    args = [changes.get(field, block.value) for field, block in zip(names, fn.inputs)]
    return client.predict(*args, api_name=api_name)


def fits(component, value):
    """Whether `value` is what `component` holds (what Gradio sends to the browser unchanged)."""
    if isinstance(component, gr.Number):
        return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(component, gr.Checkbox):
        return isinstance(value, bool)
    if isinstance(component, gr.Dropdown):
        items = value if component.multiselect else [value]
        if component.multiselect and not isinstance(value, list):
            return False
        choices = [choice[1] if isinstance(choice, tuple) else choice for choice in component.choices]
        return all(isinstance(item, str) for item in items) and (
            component.allow_custom_value or all(item in choices for item in items))
    if isinstance(component, gr.Textbox):
        return isinstance(value, str)
    raise AssertionError(f"no rule for {type(component).__name__}")


# --- login ---------------------------------------------------------------------------------------


def test_calls_without_a_login_are_refused(served):
    app, _, url, root, _ = served
    api_name, names, fn = endpoint(app, "on_save")
    target = root / "anonymous.yaml"
    args = [str(target) if field == "config_path" else block.value for field, block in zip(names, fn.inputs)]
    answer = httpx.post(url + "gradio_api/call" + api_name, json={"data": args}, timeout=30)
    assert answer.status_code == 401
    assert httpx.get(url + "config", timeout=30).status_code == 401
    with pytest.raises(Exception):
        Client(url, verbose=False)
    with pytest.raises(Exception):
        Client(url, auth=(LOGIN[0], "wrong"), verbose=False)
    assert not target.exists()


# --- Load config ---------------------------------------------------------------------------------


def test_saved_config_loads_back_into_every_kind_of_component(served):
    app, _, _, root, _ = served
    path = str(root / "every_kind.yaml")
    changes = {
        "config_path": path, "model_name_or_path": "models/tiny", "template": "qwen",  # text, custom drop-down
        "use_dora": True, "lora_rank": 16, "learning_rate": 2e-4, "num_train_epochs": 2.0,  # checkbox, numbers
        "lr_scheduler_type": "linear", "packing": "true", "quantization_bit": "4",  # drop-downs
        "dataset": ["alpha", "beta"], "lora_target": "q_proj, v_proj", "output_dir": str(root / "run"),
        "compute_type": "bf16", "booster": "flashattn2", "checkpoint_path": [str(root / "a")], "ds_stage": "3",
        "ds_offload": True, "device_count": 2, "extra_args": "max_steps: 7\nweight_decay: 0.1\n"}
    assert call(served, "on_save", changes) == f"saved {path}"
    _, names, fn = endpoint(app, "on_load")
    before = {**{field: block.value for field, block in zip(names, fn.inputs)}, "config_path": path,
              "device_count": 2}
    loaded = call(served, "on_load", {"config_path": path, "device_count": 2})
    assert loaded[-1] == f"loaded {path}"
    # gr.update(): the value is left as it was (no value) or set (value)
    shown = {field: value.get("value", before[field]) if isinstance(value, dict) and "__type__" in value else value
             for field, value in zip(names, loaded[:-1])}
    expected = {**changes, "checkpoint_path": [str(root / "a")], "extra_args": shown["extra_args"]}
    assert {field: shown[field] for field in changes} == expected
    assert yaml.safe_load(shown["extra_args"]) == {"max_steps": 7, "weight_decay": 0.1}
    misfits = {field: shown[field] for field, block in zip(names, fn.inputs) if not fits(block, shown[field])}
    assert misfits == {}
    untouched = {field: shown[field] for field in names if field not in changes}
    assert untouched == {field: before[field] for field in untouched}


def test_every_llamafactory_example_fits_the_form(served):
    app, *_ = served
    examples = sorted(LF_EXAMPLES.rglob("*.yaml"))
    if not examples:
        pytest.skip(f"no LLaMA-Factory examples at {LF_EXAMPLES}")
    _, names, fn = endpoint(app, "on_load")
    from tuneforge.config import all_params, hf_params

    params = {**hf_params(), **all_params()}
    misfits = []
    for path in examples:
        shown = form.config_to_form(form.read_yaml(str(path)), names, params)
        for field, block in zip(names, fn.inputs):
            if field in shown and not fits(block, shown[field]):
                misfits.append(f"{path.relative_to(LF_EXAMPLES)}: {field}={shown[field]!r}")
            block.postprocess(shown.get(field, block.value))  # what raised "Could not postprocess"
    assert misfits == []
    assert len(examples) > 50


def test_text_numbers_and_switches_take_their_components_types():
    from tuneforge.config import all_params, hf_params

    params = {**hf_params(), **all_params()}
    # PyYAML reads 5e-5 as text; a switch may be written as text; an int field may hold 3.0
    shown = form.config_to_form({"learning_rate": "5e-5", "use_dora": "false", "lora_rank": 8.0, "cutoff_len": "1024",
                                 "max_grad_norm": "much"}, ["learning_rate", "use_dora", "lora_rank", "cutoff_len",
                                                            "max_grad_norm", "extra_args"], params)
    assert (shown["learning_rate"], shown["use_dora"], shown["lora_rank"], shown["cutoff_len"]) == (5e-5, False, 8, 1024)
    # a value no number field can show stays in the extra arguments, where validation names it
    assert shown["max_grad_norm"] == 1.0 and yaml.safe_load(shown["extra_args"]) == {"max_grad_norm": "much"}


# --- allowed folders and keys --------------------------------------------------------------------


def test_save_and_load_outside_the_allowed_folders_are_refused(served):
    _, _, _, root, outside = served
    target = outside / "evil.yaml"
    message = call(served, "on_save", {"config_path": str(target)})
    assert message.startswith(f"⚠ config_path: {target} is outside the folders this web UI may use (")
    assert "tuneforge webui --allowed-root DIR" in message and not target.exists()
    loaded = call(served, "on_load", {"config_path": "/etc/passwd"})
    assert loaded[-1].startswith("⚠ config_path: /etc/passwd is outside the folders")
    sneaky = str(root / ".." / outside.name / "evil.yaml")  # `..` out of an allowed folder
    assert call(served, "on_save", {"config_path": sneaky}).startswith(f"⚠ config_path: {sneaky} is outside")
    assert not target.exists()


@pytest.mark.parametrize("changes, key", [
    ({"output_dir": "OUTSIDE/run"}, "output_dir"),
    ({"dataset_dir": "OUTSIDE"}, "dataset_dir"),
    ({"model_name_or_path": "OUTSIDE"}, "model_name_or_path"),
    ({"extra_args": "dataset_dir: OUTSIDE\n"}, "dataset_dir"),
    ({"extra_args": "output_dir: OUTSIDE/run\n"}, "output_dir"),
    ({"extra_args": "trust_remote_code: true\n"}, "trust_remote_code"),
])
def test_start_refuses_what_the_server_does_not_allow(served, monkeypatch, changes, key):
    _, _, _, root, outside = served
    started = JOBS.get("train")
    changes = {name: value.replace("OUTSIDE", str(outside)) for name, value in changes.items()}
    base = {"model_name_or_path": "models/tiny", "output_dir": str(root / "run"), "dataset": ["alpha"]}
    message = call(served, "on_start", {**base, **changes})[0]
    assert message.startswith(f"⚠ {key}: ") or f"\n- {key}: " in message, message
    if key == "trust_remote_code":
        assert "tuneforge webui --allow-key trust_remote_code" in message
    else:
        assert f"{outside}" in message and "is outside the folders this web UI may use" in message
    assert JOBS.get("train") is started
    assert not os.listdir(outside)


def test_extra_arguments_pass_the_yaml_validation(served):
    _, _, _, root, _ = served
    message = call(served, "on_start", {"model_name_or_path": "models/tiny", "output_dir": str(root / "run"),
                                        "extra_args": "not_a_key: 1\n"})[0]
    assert "not_a_key" in message and message.startswith("⚠")
    assert not (root / "run" / "webui_train.yaml").exists()


def test_chat_and_past_runs_refuse_folders_outside(served):
    _, client, _, _, outside = served
    status = call(served, "on_load", {"model_name_or_path": str(outside)}, index=1)  # the chat tab's Load
    assert status.startswith(f"⚠ model_name_or_path: {outside} is outside the folders")
    with pytest.raises(Exception, match="output_root: / is outside the folders"):
        client.predict("/", api_name="/show")
