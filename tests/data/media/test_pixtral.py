"""Pixtral / Mistral-3 (templates `pixtral`, `mistral_small`) on a tiny random Mistral-3: token and pixel parity
with LLaMA-Factory 0.9.5 on mllm_demo ([IMG] rows with [IMG_BREAK] / [IMG_END]), and 3 training steps with the
vision tower frozen."""

import pytest
from image_family_parity import (assert_case_matches, assert_lora_skips_the_vision_tower, fixture_cases, make_cfg,
                                 needs_demo, train_frozen_tower)

from tuneforge.data.media import expand_media
from tuneforge.data.pipeline import load_tokenizer_and_template
from tuneforge.errors import DataError
from tuneforge.testing.tiny_vl_pixtral import build_tiny_pixtral

CASES = fixture_cases("pixtral")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_pixtral")
    build_tiny_pixtral(path)
    return path


@needs_demo
@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_match_llamafactory(model_dir, tmp_path, name):
    assert_case_matches(model_dir, tmp_path, CASES[name])


def test_image_rows_end_with_break_and_end_tokens(model_dir, tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 168), (10, 20, 30)).save(path)
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="pixtral"))
    # 300x168 fits the 112-pixel longest edge as 112x62 -> 112x70 (whole 14-pixel patches): 2 rows of 4 tokens
    # per 28 pixels (14-pixel patches, 2x2 merge).
    text = expand_media(template, [{"role": "user", "content": "<image>"}], [str(path)])[0]["content"]
    assert text == "[IMG]" * 4 + "[IMG_BREAK]" + "[IMG]" * 4 + "[IMG_END]"


def test_an_image_thinner_than_one_token_is_a_data_error(model_dir, tmp_path):
    from PIL import Image

    path = tmp_path / "thin.png"
    Image.new("RGB", (1000, 20), (10, 20, 30)).save(path)  # -> 112x2 pixels, padded to 112x14: no token row
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="pixtral"))
    with pytest.raises(DataError, match=r"becomes 112x14 pixels, less than one 28-pixel image token on a side"):
        expand_media(template, [{"role": "user", "content": "<image>"}], [str(path)])


def test_videos_are_refused(model_dir, tmp_path):
    _, template = load_tokenizer_and_template(make_cfg(model_dir, tmp_path, template="mistral_small"))
    with pytest.raises(DataError, match="videos: the Pixtral / Mistral-3 models take only images"):
        expand_media(template, [{"role": "user", "content": "<video>"}], None, videos=["a.mp4"])


@needs_demo
def test_three_steps_train_with_the_vision_tower_frozen(model_dir, tmp_path):
    losses, changed = train_frozen_tower(model_dir, tmp_path, "pixtral")
    assert len(losses) == 3 and losses[2] < losses[0], losses
    assert changed and all(name.startswith("language_model.") for name in changed)


def test_lora_skips_the_vision_tower_unless_asked(model_dir, tmp_path):
    assert_lora_skips_the_vision_tower(model_dir, tmp_path, "pixtral")
