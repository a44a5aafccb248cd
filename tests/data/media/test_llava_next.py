"""LLaVA-NeXT (template `llava_next`) on a tiny random model: token and pixel parity with LLaMA-Factory 0.9.5 on
mllm_demo (anyres token counts per image size), refused media, and 3 training steps with the tower frozen."""

import pytest
from image_family_parity import (assert_case_matches, assert_lora_skips_the_vision_tower, fixture_cases, make_cfg,
                                 needs_demo, train_frozen_tower)

from tuneforge.data.media import expand_media
from tuneforge.data.pipeline import load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_vl_llava_next import build_tiny_llava_next

CASES = fixture_cases("llava_next")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llava_next")
    build_tiny_llava_next(path)
    return path


@needs_demo
@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_match_llamafactory(model_dir, tmp_path, name):
    assert_case_matches(model_dir, tmp_path, CASES[name])


@pytest.mark.parametrize("size, tokens", [
    # 56x56 fits the 56x56 pinpoint: 16 base + 4x4 grid + 4 newlines = 36 (the 17th base feature, CLS, dropped).
    ((56, 56), 36),
    # 112x56 (wide) picks 56x112 (h x w): 16 base + a 4x8 grid + 4 newlines = 52.
    ((112, 56), 52),
    # 300x168 picks 112x112 (an 8x8 grid); its letterbox rows are cut, leaving 4 rows of 8: 16 + 32 + 4 = 52.
    ((300, 168), 52),
])
def test_token_count_depends_on_the_image_size(model_dir, tmp_path, size, tokens):
    from PIL import Image

    path = tmp_path / "image.png"
    Image.new("RGB", size, (10, 20, 30)).save(path)
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="llava_next"))
    assert template.media_plugin.image_token_count(str(path)) == tokens
    text = expand_media(template, [{"role": "user", "content": "<image>"}], [str(path)])[0]["content"]
    assert text == "<image>" * tokens


def test_audios_are_refused(model_dir, tmp_path):
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="llava_next"))
    with pytest.raises(DataError, match="audios: the LLaVA-NeXT models take only images"):
        expand_media(template, [{"role": "user", "content": "<audio>"}], None, audios=["a.wav"])


@needs_demo
def test_three_steps_train_with_the_vision_tower_frozen(model_dir, tmp_path):
    losses, changed = train_frozen_tower(model_dir, tmp_path, "llava_next")
    assert len(losses) == 3 and losses[2] < losses[0], losses
    # Projector frozen by default; image_newline (a model parameter beside the projector) trains.
    assert changed and all(name.startswith("language_model.") or name == "image_newline" for name in changed)


def test_lora_skips_the_vision_tower_unless_asked(model_dir, tmp_path):
    assert_lora_skips_the_vision_tower(model_dir, tmp_path, "llava_next")
