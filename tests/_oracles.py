"""Slow, obvious reference implementations shared by the oracle tests (never the code under test)."""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
    """Unit-cost edit distance by the textbook dynamic programme, one row at a time."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]
