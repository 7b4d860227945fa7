"""Embedded text sources: WordNet glosses, fortunes, KJV and WEB Bibles, VADER gold snippets.

Each reader returns plain Python records; prepare_text decides splits, hold-outs and formats.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from d2v.errors import D2VError

# WordNet lexicographer files, indexed by the two-digit lex_filenum of data.* lines (45 classes).
WORDNET_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession "
    "noun.process noun.quantity noun.relation noun.shape noun.state noun.substance noun.time "
    "verb.body verb.change verb.cognition verb.communication verb.competition verb.consumption "
    "verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
_ROMAN_BOOK = {"I": "1", "II": "2", "III": "3"}
_WEB_VERSE = re.compile(r"((?:(?:I{1,3}) )?[A-Z][A-Za-z ]*?) (\d+):(\d+): ?(.*)$")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Gloss:
    key: str  # "<pos>-<offset>", unique per synset
    lexfile: int  # index into WORDNET_LEXNAMES
    text: str


def clean(text: str) -> str:
    return _SPACE.sub(" ", _TAG.sub("", text)).strip()


def read_wordnet_glosses(wordnet_dir: str | Path) -> list[Gloss]:
    glosses = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = Path(wordnet_dir) / f"data.{pos}"
        for line in _read_lines(path):
            if line.startswith("  ") or " | " not in line:
                continue  # licence header lines start with two spaces
            head, gloss = line.split(" | ", 1)
            fields = head.split(" ")
            glosses.append(Gloss(f"{pos}-{fields[0]}", int(fields[1]), clean(gloss)))
    return glosses


def read_fortunes(fortunes_dir: str | Path) -> list[str]:
    texts = []
    for path in sorted(Path(fortunes_dir).iterdir()):
        if path.is_symlink() or not path.is_file() or path.suffix in {".dat", ".u8"}:
            continue
        raw = path.read_bytes().decode("utf-8", errors="replace")
        texts += [t for t in (clean(chunk) for chunk in raw.split("\n%\n")) if t]
    return texts


VerseKey = tuple[str, int, int]  # (book, chapter, verse), books named as the KJV names them


def parse_kjv(text: str) -> dict[VerseKey, str]:
    """`bible -l 100000 Gen1:1-Rev22:21` output: 'Book N' header lines, then '  V text' lines."""
    verses: dict[VerseKey, str] = {}
    book, chapter = "", 0
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("  "):
            number, _, body = line.strip().partition(" ")
            if book and number.isdigit():
                verses[(book, chapter, int(number))] = clean(body)
        else:
            name, _, num = line.strip().rpartition(" ")
            book, chapter = name, int(num) if num.isdigit() else 0
    return verses


def parse_web(text: str) -> dict[VerseKey, str]:
    """diatheke plain range dump. It repeats stale psalm headings: lines seen more than 5 times and
    lines after a blank line are dropped; other continuation lines extend the current verse."""
    lines = text.splitlines()
    counts = Counter(lines)
    verses: dict[VerseKey, list[str]] = {}
    current: VerseKey | None = None
    previous_blank = False
    for line in lines:
        match = _WEB_VERSE.search(line)
        if match:
            book = _normalise_book(match.group(1).strip())
            current = (book, int(match.group(2)), int(match.group(3)))
            verses[current] = [match.group(4)]
        elif current and line.strip() and not previous_blank and counts[line] <= 5:
            verses[current].append(line)
        previous_blank = not line.strip()
    return {key: clean(" ".join(parts)) for key, parts in verses.items() if clean(" ".join(parts))}


def _normalise_book(name: str) -> str:
    first, _, rest = name.partition(" ")
    if first in _ROMAN_BOOK and rest:
        name = f"{_ROMAN_BOOK[first]} {rest}"
    return "Revelation" if name == "Revelation of John" else name


def read_kjv() -> dict[VerseKey, str]:
    return parse_kjv(_run(["bible", "-l", "100000", "Gen1:1-Rev22:21"]))


# diatheke renders a range on one core, and the whole Bible took 4.4 of the prepare stage's ~7 s on
# a fast 2-core machine: two halves of similar cost render at once (2.4 s). Their dumps are parsed
# as one text, because parse_web's repeated-line rule counts lines over the whole dump; every
# verse the paraphrase task can pair (those in the KJV too) parses as from the single range.
WEB_RANGES = ("Gen 1:1-Psa 150:6", "Pro 1:1-Rev 22:21")


def read_web() -> dict[VerseKey, str]:
    commands = [["diatheke", "-b", "engWEB2015eb", "-f", "plain", "-k", part] for part in WEB_RANGES]
    with ThreadPoolExecutor(len(commands)) as pool:  # the work is in the subprocesses
        return parse_web("".join(pool.map(_run, commands)))


def read_vader_movie_snippets(sdist: str | Path) -> list[tuple[str, str, float]]:
    """(id, text, mean rating -4..4) of the Pang & Lee movie snippets in the vaderSentiment sdist."""
    sdist = Path(sdist)
    try:
        with tarfile.open(sdist) as outer:
            member = next(m for m in outer.getnames() if m.endswith("hutto_ICWSM_2014.tar.gz"))
            inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            name = next(m for m in inner.getnames() if m.endswith("movieReviewSnippets_GroundTruth.txt"))
            raw = inner.extractfile(name).read()  # type: ignore[union-attr]
    except (OSError, tarfile.TarError, StopIteration) as exc:
        raise D2VError(f"{sdist}: cannot read the VADER movie snippets ({exc!r})") from exc
    rows = []
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        try:
            rows.append((f"vader-{parts[0]}", clean(parts[2]), float(parts[1])))
        except ValueError:
            raise D2VError(f"{sdist}: movie snippets line {number}: bad score {parts[1]!r}") from None
    return rows


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise D2VError(f"{path}: cannot read ({exc.strerror})") from exc


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, check=True)
    except FileNotFoundError:
        raise D2VError(f"{cmd[0]}: not installed (make setup installs infra/apt-packages.txt)") from None
    except subprocess.CalledProcessError as exc:
        raise D2VError(f"{' '.join(cmd)}: failed: {exc.stderr.decode(errors='replace')[-300:]}") from None
    return done.stdout.decode("utf-8", errors="replace")
