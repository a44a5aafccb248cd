"""tests/model reuses the training-recipe helpers of tests/train/test_train_recipes.py (run_recipe, _losses):
that directory goes on the path, so a run of tests/model alone imports them too."""

import sys
from pathlib import Path

_TRAIN_TESTS = str(Path(__file__).resolve().parents[1] / "train")
if _TRAIN_TESTS not in sys.path:
    sys.path.append(_TRAIN_TESTS)
