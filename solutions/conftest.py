"""pytest runs every notebook here with nbval, in the test environment of tests/support.py (fast mode, test caches)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import support  # noqa: E402, F401  (configures the environment on import)
