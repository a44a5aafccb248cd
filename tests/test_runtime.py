"""Process-wide facts are read once, in one place (tuneforge.runtime)."""

from tuneforge.runtime import read_runtime, runtime


def test_a_plain_process_is_rank_zero_of_one():
    facts = read_runtime({})
    assert (facts.rank, facts.local_rank, facts.world_size) == (0, 0, 1)
    assert facts.is_main and facts.is_local_main and not facts.is_distributed
    assert facts.hub == "hf_hub" and not facts.hub_offline and not facts.launched_by_tuneforge


def test_a_torchrun_worker():
    facts = read_runtime({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "TUNEFORGE_LAUNCHED": "1"})
    assert (facts.rank, facts.local_rank, facts.world_size) == (3, 1, 4)
    assert not facts.is_main and not facts.is_local_main and facts.is_distributed and facts.launched_by_tuneforge


def test_flags_are_parsed_one_way():
    for text, expected in (("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("", False)):
        assert read_runtime({"HF_HUB_OFFLINE": text}).hub_offline is expected
    assert read_runtime({"TRANSFORMERS_OFFLINE": "1"}).hub_offline is True
    assert read_runtime({"USE_MODELSCOPE_HUB": "1"}).hub == "ms_hub"
    assert read_runtime({"USE_OPENMIND_HUB": "true"}).hub == "om_hub"
    assert read_runtime({"TUNEFORGE_CACHE": "/x/cache"}).cache_root == "/x/cache"


def test_runtime_is_read_once_until_cleared(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert runtime().world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert runtime().world_size == 1
    runtime.cache_clear()
    assert runtime().world_size == 2
