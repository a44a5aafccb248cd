"""`streaming: true`: training reads a jsonl file lazily, and a resumed run continues at the right place in the
stream: it trains on the same batches as the run that was never interrupted."""

from __future__ import annotations

import json
import shutil

import pytest

from tuneforge.config import make_config
from tuneforge.errors import ConfigError
from tuneforge.train import run_train
from tuneforge.train.batching.padding_free import is_padding_free_batch
from tuneforge.train.trainer import TuneforgeTrainer

STEPS, SAVE_AT = 6, 3


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stream_data")
    with open(folder / "rows.jsonl", "w", encoding="utf-8") as handle:
        for i in range(40):  # every row distinct, so a batch names the rows it holds
            handle.write(json.dumps({"instruction": f"Question number {i}?", "output": f"Answer {i}."}) + "\n")
    (folder / "dataset_info.json").write_text(json.dumps({"rows": {"file_name": "rows.jsonl"}}))
    return folder


def _values(model_dir, data_dir, output_dir, **extra):
    return {"model_name_or_path": str(model_dir), "stage": "sft", "do_train": True, "finetuning_type": "lora",
            "dataset": "rows", "dataset_dir": str(data_dir), "template": "qwen", "cutoff_len": 32,
            "streaming": True, "buffer_size": 8, "max_steps": STEPS, "save_steps": SAVE_AT, "logging_steps": 1,
            "per_device_train_batch_size": 2, "learning_rate": 1e-3, "output_dir": str(output_dir),
            "report_to": "none", "seed": 7, "dataloader_num_workers": 0, **extra}


def _train_recording_batches(values, monkeypatch) -> list[tuple[int, ...]]:
    batches: list[tuple[int, ...]] = []
    original = TuneforgeTrainer.training_step

    def spy(self, model, inputs, *args, **kwargs):
        assert is_padding_free_batch(inputs)  # the default layout, whose target positions must stay whole
        batches.append(tuple(inputs["input_ids"].flatten().tolist()))
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(TuneforgeTrainer, "training_step", spy)
    run_train(make_config(values))
    monkeypatch.setattr(TuneforgeTrainer, "training_step", original)
    return batches


def test_resume_inside_a_stream_trains_on_the_batches_the_straight_run_trained_on(tiny_llama_dir, data_dir,
                                                                                    tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    expected = _train_recording_batches(_values(tiny_llama_dir, data_dir, straight), monkeypatch)
    assert len(expected) == STEPS
    assert len(set(expected)) == STEPS  # distinct batches: the comparison below can tell positions apart

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / f"checkpoint-{SAVE_AT}", resumed / f"checkpoint-{SAVE_AT}")
    after = _train_recording_batches(_values(tiny_llama_dir, data_dir, resumed), monkeypatch)
    assert after == expected[SAVE_AT:]


def test_streaming_without_max_steps_is_refused(tiny_llama_dir, data_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"streaming needs max_steps \(the length of a streamed dataset is "
                                          r"unknown\)"):
        make_config(_values(tiny_llama_dir, data_dir, tmp_path, max_steps=-1))
