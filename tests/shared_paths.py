"""Where the read-only reference material (LLaMA-Factory demo data and example YAMLs) lies, if anywhere.

It sits beside the repository as `../shared` (developer machines and CI); a user's fresh clone has none,
so every test that uses it skips when it is absent. TUNEFORGE_SHARED overrides the location.
"""

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNEFORGE_SHARED", _REPO.parent / "shared"))
LF_EXAMPLES = SHARED / "examples" / "llamafactory"
LF_DEMO_DATA = SHARED / "data" / "llamafactory-demo"
