"""Find WordNet for METEOR without downloading anything at run time.

NLTK's METEOR matches synonyms through WordNet 3.0. NLTK ships no data in its wheel and its
downloader needs the network, so the database is looked up, in order:

1. NLTK's own ``wordnet`` corpus when it is installed (``python -m nltk.downloader wordnet``);
2. a Princeton WordNet 3.0 database directory (``data.noun``, ``index.noun``, ...): the
   ``VERL_PERCEPTION_WORDNET_DIR`` environment variable, else ``/usr/share/wordnet`` from
   Debian/Ubuntu's ``wordnet-base`` package (``apt-get install wordnet-base``). That layout
   lacks NLTK's ``lexnames`` file, so the database is copied once into a cache directory
   (``$XDG_CACHE_HOME/verl-perception/wordnet-3.0``) with ``lexnames`` written from WordNet's
   fixed list of lexicographer files (lexnames(5WN)).

When neither exists, :func:`load_wordnet` returns ``(None, reason)`` and METEOR is reported as
unavailable with that reason, never as a made-up number.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

ENV_DIR = "VERL_PERCEPTION_WORDNET_DIR"
SYSTEM_DIRS = ("/usr/share/wordnet",)
# The WordNet 3.0 database files NLTK's reader opens (index.sense and cntlist.rev are optional).
DB_FILES = (
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)  # fmt: skip
OPTIONAL_FILES = ("index.sense", "cntlist.rev")
# lexnames(5WN): lexicographer file number -> (name, syntactic category: 1 noun, 2 verb, 3 adj, 4 adv).
_NOUNS = (
    "Tops act animal artifact attribute body cognition communication event feeling food group location "
    "motive object person phenomenon plant possession process quantity relation shape state substance time"
).split()
_VERBS = (
    "body change cognition communication competition consumption contact creation emotion motion "
    "perception possession social stative weather"
).split()
LEXNAMES: tuple[tuple[str, int], ...] = (
    (("adj.all", 3), ("adj.pert", 3), ("adv.all", 4))
    + tuple((f"noun.{n}", 1) for n in _NOUNS)
    + tuple((f"verb.{v}", 2) for v in _VERBS)
    + (("adj.ppl", 3),)
)
assert len(LEXNAMES) == 45


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "verl-perception"


def _is_db(path: Path) -> bool:
    return all((path / f).is_file() for f in ("data.noun", "index.noun", "data.verb", "index.verb"))


def _nltk_layout(src: Path) -> Path:
    """A directory NLTK's reader accepts: ``src`` itself when it has ``lexnames``, else a cached copy."""
    if (src / "lexnames").is_file():
        return src
    dst = _cache_root() / "wordnet-3.0"
    marker = dst / ".complete"
    if marker.is_file() and marker.read_text() == str(src):
        return dst
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in DB_FILES + OPTIONAL_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, tmp / name)
        elif name in OPTIONAL_FILES:
            (tmp / name).write_text("")
    (tmp / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{c}\n" for i, (n, c) in enumerate(LEXNAMES)))
    (tmp / ".complete").write_text(str(src))
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst


def _reader(root: Path):
    import warnings

    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNet30Reader(WordNetCorpusReader):
        # NLTK maps every database onto its own downloaded "wordnet" corpus for the multilingual
        # (OMW) functions; this database is WordNet 3.0 itself, and METEOR uses no OMW data.
        def map_wn(self, version="wordnet"):
            return None

    # NLTK only opens files under its data roots; the WordNet directory's parent becomes one.
    parent = str(root.parent)
    if parent not in nltk.data.path:
        nltk.data.path.append(parent)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The multilingual functions")
        wn = WordNet30Reader(str(root), None)
    if wn.get_version() != "3.0":
        raise ValueError(f"expected a WordNet 3.0 database, found version {wn.get_version()!r}")
    if not wn.synsets("dog"):  # fail here, not inside METEOR, if the files are unusable
        raise ValueError("the database has no synset for 'dog'")
    return wn


@lru_cache(maxsize=1)
def load_wordnet():
    """``(reader, source)`` when WordNet is available, else ``(None, reason)``."""
    try:
        import nltk  # noqa: F401
    except ImportError:
        return None, "nltk is not installed (pip install 'nltk>=3.9')"
    try:
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet, "nltk_data wordnet corpus"
    except (LookupError, OSError, PermissionError):
        pass
    candidates = [os.environ[ENV_DIR]] if os.environ.get(ENV_DIR) else []
    candidates += list(SYSTEM_DIRS)
    errors = []
    for c in candidates:
        src = Path(c)
        if not _is_db(src):
            continue
        try:
            return _reader(_nltk_layout(src)), f"WordNet 3.0 database at {src}"
        except Exception as e:  # an unreadable copy must not stop the other metrics
            errors.append(f"{src}: {type(e).__name__}: {e}")
    reason = (
        "WordNet data not found (METEOR needs it): install NLTK's corpus with "
        "`python -m nltk.downloader wordnet`, or Debian/Ubuntu's `apt-get install wordnet-base`, "
        f"or point {ENV_DIR} at a WordNet 3.0 dict directory"
    )
    if errors:
        reason += "; tried " + "; ".join(errors)
    return None, reason
