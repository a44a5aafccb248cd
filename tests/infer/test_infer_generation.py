"""Generation arguments -> model.generate kwargs, with LLaMA-Factory's rules (no model needed)."""

import pytest

from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.config.generation import generation_params, generation_settings, resolve_generation

DEFAULTS = generation_settings(make_config({}).generate)


def test_the_generate_group_is_the_list_of_arguments_with_lf_defaults():
    assert list(generation_params()) == ["do_sample", "temperature", "top_p", "top_k", "num_beams", "max_length",
                                         "max_new_tokens", "repetition_penalty", "length_penalty",
                                         "skip_special_tokens"]
    assert DEFAULTS == dict(do_sample=True, temperature=0.95, top_p=0.7, top_k=50, num_beams=1, max_length=1024,
                            max_new_tokens=1024, repetition_penalty=1.0, length_penalty=1.0,
                            skip_special_tokens=True)


def test_defaults_sample_with_max_new_tokens_and_no_length_penalty_without_beams():
    kwargs, skip = resolve_generation(DEFAULTS)
    assert kwargs == dict(do_sample=True, temperature=0.95, top_p=0.7, top_k=50, num_beams=1,
                          repetition_penalty=1.0, max_new_tokens=1024)
    assert skip is True


@pytest.mark.parametrize("change", [{"do_sample": False}, {"temperature": 0}])
def test_greedy_drops_the_sampling_arguments(change):
    kwargs, _ = resolve_generation(DEFAULTS, change)
    assert kwargs == dict(do_sample=False, num_beams=1, repetition_penalty=1.0, max_new_tokens=1024)


def test_beam_search_keeps_length_penalty():
    kwargs, _ = resolve_generation(DEFAULTS, {"num_beams": 3, "length_penalty": 0.5, "do_sample": False})
    assert kwargs == dict(do_sample=False, num_beams=3, repetition_penalty=1.0, length_penalty=0.5,
                          max_new_tokens=1024)


def test_max_new_tokens_wins_unless_zero_and_requests_override_the_config():
    config_max_length = {**DEFAULTS, "max_new_tokens": 0, "max_length": 300}
    assert resolve_generation(config_max_length)[0]["max_length"] == 300
    assert "max_new_tokens" not in resolve_generation(config_max_length)[0]
    request_max_length, _ = resolve_generation(DEFAULTS, {"max_length": 50})
    assert request_max_length["max_length"] == 50 and "max_new_tokens" not in request_max_length
    both, _ = resolve_generation(DEFAULTS, {"max_length": 50, "max_new_tokens": 7})
    assert both["max_new_tokens"] == 7 and "max_length" not in both


def test_request_values_are_converted_and_none_means_the_config_value():
    kwargs, skip = resolve_generation(DEFAULTS, {"top_k": "5", "top_p": None, "skip_special_tokens": "false"})
    assert kwargs["top_k"] == 5 and kwargs["top_p"] == 0.7 and skip is False


def test_unknown_and_bad_arguments_name_the_argument():
    with pytest.raises(ConfigError, match=r"unknown generation argument 'temprature'; use one of do_sample, "):
        resolve_generation(DEFAULTS, {"temprature": 0.3})
    with pytest.raises(ConfigError, match=r"top_k: expected an integer, got 'many' \(str\)"):
        resolve_generation(DEFAULTS, {"top_k": "many"})


@pytest.mark.parametrize("change, message", [
    ({"temperature": -1.0}, "temperature: -1.0 is negative; use 0 (greedy) or a positive number."),
    ({"top_p": 1.5}, "top_p: 1.5 must be in (0, 1]; 1 keeps every token."),
    ({"top_k": -2}, "top_k: -2 is negative"),
    ({"num_beams": 0}, "num_beams: 0 must be at least 1"),
    ({"repetition_penalty": 0.0}, "repetition_penalty: 0.0 must be positive"),
    ({"max_new_tokens": -1, "max_length": 0}, "max_new_tokens and max_length are both <= 0"),
])
def test_out_of_range_values_fail_up_front(change, message):
    with pytest.raises(ConfigError) as error:
        resolve_generation({**DEFAULTS, **change})
    assert message in str(error.value)
