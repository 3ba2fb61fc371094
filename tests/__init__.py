"""dbops' test suite.

Bytecode: some machines set PYTHONDONTWRITEBYTECODE, and then every process the suite starts
(each xdist worker, each `python -m dbops` a kill or concurrency test runs) compiles every
module it imports again: about 0.7 s of CPU per process. This package is imported before
conftest.py imports anything heavy, so it points Python's bytecode cache at a folder of the
repository's pytest cache instead (PYTHONPYCACHEPREFIX, for this process and its children)
and lets it be written there. Source folders stay free of __pycache__, as the setting wants.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if sys.dont_write_bytecode and sys.pycache_prefix is None:
    _prefix = str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "pycache")
    sys.pycache_prefix = _prefix
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = _prefix
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
