"""pytest plugin for benchmarks/mutation_score.sh: every test starts with the package's memo caches empty.

mutmut runs the tests once, then forks each mutant's test run from that process, so every cache the
package keeps (ground truths decoded per row, label vocabularies, cost features, WordNet) would
already hold the values of the unmutated code, and a mutant in a function behind a cache would
never run. Clearing them before each test makes the mutant run exactly as in a fresh process. The
same holds for the on-disk cache of metrics/wordnet.py (the WordNet copy with its ``lexnames``
index): each test gets an empty ``XDG_CACHE_HOME``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

_CACHE_HOME = None


def _clear_package_caches() -> None:
    for name, module in list(sys.modules.items()):
        if not name.startswith("verl_perception") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if callable(getattr(value, "cache_clear", None)):  # functools.lru_cache / cache
                value.cache_clear()
            elif isinstance(value, dict) and attr.startswith("_") and attr.endswith(("_CACHE", "_PREPARED", "_SCORERS")):
                value.clear()
        last = getattr(module, "_LAST_VOCABULARY", None)  # rewards.detection: the last row's vocabulary
        if isinstance(last, list) and len(last) == 3:
            last[:] = [None, -1, None]


def pytest_runtest_setup(item) -> None:
    global _CACHE_HOME
    _clear_package_caches()
    if _CACHE_HOME is not None:
        shutil.rmtree(_CACHE_HOME, ignore_errors=True)
    _CACHE_HOME = tempfile.mkdtemp(prefix="mutation_cache_home_")
    os.environ["XDG_CACHE_HOME"] = _CACHE_HOME


def pytest_unconfigure(config) -> None:
    if _CACHE_HOME is not None:
        shutil.rmtree(_CACHE_HOME, ignore_errors=True)
