"""The typed groups are the declarations' mirror: generated, never edited by hand, and filled at resolution."""

import dataclasses

import pytest

from tuneforge.config import make_config
from tuneforge.config.groups import GROUP_CLASSES
from tuneforge.config.groups_gen import GROUPS_FILE, group_params, render
from tuneforge.config.schema import GROUPS


def test_groups_file_is_generated_from_the_declarations():
    assert GROUPS_FILE.read_text() == render(), "run: python -m tuneforge.config.groups_gen"


@pytest.mark.parametrize("group", GROUPS)
def test_each_group_holds_exactly_its_declared_parameters(group):
    fields = [field.name for field in dataclasses.fields(GROUP_CLASSES[group])]
    assert fields == [param.name for param in group_params(group)]


def test_a_resolved_config_fills_every_group_with_its_values():
    cfg = make_config({"lora_rank": 4, "cutoff_len": 77, "learning_rate": 3e-4, "stage": "pt"})
    assert (cfg.lora.lora_rank, cfg.lora.lora_alpha) == (4, 8)  # computed default, resolved once
    assert cfg.data.cutoff_len == 77 and cfg.data.packing is True
    assert cfg.train.learning_rate == 3e-4 and cfg.train.output_dir == "trainer_output"
    assert cfg.method.stage == "pt"
    for group in GROUPS:
        assert isinstance(getattr(cfg, group), GROUP_CLASSES[group])


def test_replace_rebuilds_the_groups():
    cfg = make_config({"cutoff_len": 10})
    changed = cfg.replace(cutoff_len=20, lora_rank=2)
    assert (changed.data.cutoff_len, changed.lora.lora_rank) == (20, 2)
    assert cfg.data.cutoff_len == 10


def test_switches_are_declared_keys_with_environment_aliases(monkeypatch):
    assert make_config({}).train.padding_free is True
    monkeypatch.setenv("TUNEFORGE_PADDING_FREE", "0")
    monkeypatch.setenv("TUNEFORGE_TRACE_SAMPLES", "1")
    aliased = make_config({})
    assert aliased.train.padding_free is False and aliased.train.trace_samples is True
    assert make_config({"padding_free": True}).train.padding_free is True  # the key wins over its alias
