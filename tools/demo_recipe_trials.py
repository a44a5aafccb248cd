"""Compare recipes of the real-model demo (`make demo`) by the demo's own judgement, one after the other.

    python tools/demo_recipe_trials.py [--out demo_trials] "learning_rate=5e-4" "num_train_epochs=3" ...

Each argument is one trial: comma-separated `key=value` changes to the demo's RECIPE (tuneforge/demo/real.py);
an empty string is the recipe itself. Each trial runs the whole demo (questions before, LoRA training, questions
after) into <out>/<n>/ and the table at the end gives, per trial: identity learned ('Forge' in "Who are you?"),
knowledge kept ('Paris'), first/last logged loss, wall seconds and CPU seconds of the trial (this process and
its children), so trials on a shared machine compare by CPU time. docs/demo.md records the results.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import yaml


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def parse_changes(text: str) -> dict:
    changes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        changes[key.strip()] = yaml.safe_load(value)
    return changes


def main() -> int:
    from tuneforge.demo.real import RECIPE, run_real_demo
    from tuneforge.testing.real_model import smollm2_gguf, smollm2_missing_reason

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trials", nargs="+", help="comma-separated key=value changes per trial ('' = the recipe)")
    parser.add_argument("--out", default="demo_trials")
    args = parser.parse_args()
    gguf = smollm2_gguf()
    if gguf is None:
        raise SystemExit(f"no real model: {smollm2_missing_reason()}")
    rows = []
    for number, trial in enumerate(args.trials, 1):
        changes = parse_changes(trial)
        out = Path(args.out) / str(number)
        wall, cpu = time.time(), cpu_seconds()
        run_real_demo(gguf, out, {**RECIPE, **changes})
        result = json.loads((out / "verdict.json").read_text())
        rows.append((trial or "(the recipe)", result, time.time() - wall, cpu_seconds() - cpu))
    print("\n| changes to the recipe | identity learned | Paris kept | loss first -> last | wall s | CPU s |")
    print("|---|---|---|---|---|---|")
    for trial, result, wall, cpu in rows:
        loss = (f"{result['first_loss']:.2f} -> {result['last_loss']:.2f}" if result["first_loss"] is not None
                else "-")
        print(f"| {trial} | {'yes' if result['learned'] else 'NO'} | {'yes' if result['kept'] else 'NO'} | "
              f"{loss} | {wall:.0f} | {cpu:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
