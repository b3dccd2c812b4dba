"""pytest plugin for benchmarks/mutation_score.sh: every test starts with the package's memo caches empty.

mutmut runs the tests once, then forks each mutant's test run from that process, so every cache the
package keeps (ground truths decoded per row, label vocabularies, cost features, WordNet) would
already hold the values of the unmutated code, and a mutant in a function behind a cache would
never run. Clearing them before each test makes the mutant run exactly as in a fresh process.
"""

from __future__ import annotations

import sys


def _clear_package_caches() -> None:
    for name, module in list(sys.modules.items()):
        if not name.startswith("verl_perception") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if callable(getattr(value, "cache_clear", None)):  # functools.lru_cache / cache
                value.cache_clear()
            elif isinstance(value, dict) and attr.startswith("_") and attr.endswith(("_CACHE", "_PREPARED")):
                value.clear()
        last = getattr(module, "_LAST_VOCABULARY", None)  # rewards.detection: the last row's vocabulary
        if isinstance(last, list) and len(last) == 3:
            last[:] = [None, -1, None]


def pytest_runtest_setup(item) -> None:
    _clear_package_caches()
