"""The category tree: loading, lookup and hierarchy walks.

Two line formats are accepted, and may be mixed in one file:

* Google: ``ID - A > B > C`` (``#`` starts a comment line). Google lists every
  ancestor explicitly.
* plain: ``A > B > C``. The id is derived from the path (see ``path_id``), so it
  is stable when lines are added, removed or reordered.

Ancestors that no line declares are created implicitly with path-derived ids, so a
plain file may list leaves only. Parse errors (``TaxonomyError``) name the file
and the line. A ``Taxonomy`` is immutable; every walk used per product
(ancestors, level, path) is precomputed, so lookups cost a dict access.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Plain-line ids live above every hand-assigned id (Google's are < 10^7) and below
# 2^53 so that JSON consumers in any language read them exactly. With 48 bits of
# sha256 a collision among 10^4 paths has probability ~2e-7; it is detected anyway.
PATH_ID_OFFSET = 1 << 32
PATH_ID_BITS = 48

_GOOGLE_LINE = re.compile(r"^\s*(\d+)\s*-\s*(\S.*?)\s*$")
# Delimiters accepted when *looking up* a path typed by a person or sent by a feed.
_LOOKUP_DELIMITERS = re.compile(r"\s*[>›»]\s*")
_SPACES = re.compile(r"\s+")


class TaxonomyError(ValueError):
    """The taxonomy file is invalid; the message names the file and line to fix."""


class UnknownCategoryError(KeyError):
    """A category id or path is not in the taxonomy; the message lists close paths."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would repr() the message, quoting it
        return self.message


@dataclass(frozen=True, slots=True)
class Category:
    id: int
    name: str
    path: tuple[str, ...]
    parent_id: int | None
    level: int  # 1 = top level

    @property
    def path_str(self) -> str:
        return " > ".join(self.path)


@lru_cache(maxsize=65536)
def normalise_segment(segment: str) -> str:
    """Case-, width- and whitespace-insensitive form of one path segment."""
    text = unicodedata.normalize("NFKC", segment).casefold()
    return _SPACES.sub(" ", text).strip()


def split_path(path: str) -> tuple[str, ...]:
    """``'a>b ›  c'`` → ``('a', 'b', 'c')`` with original case, empty segments dropped."""
    return tuple(s for s in (p.strip() for p in _LOOKUP_DELIMITERS.split(path)) if s)


def normalise_path(path: str | Iterable[str]) -> str:
    """The lookup key of a path: normalised segments joined by ``' > '``."""
    segments = split_path(path) if isinstance(path, str) else tuple(path)
    return " > ".join(normalise_segment(s) for s in segments)


def path_id(path: Iterable[str]) -> int:
    """The stable id of a plain-format path: a hash of its normalised form."""
    digest = hashlib.sha256(normalise_path(path).encode("utf-8")).digest()
    return PATH_ID_OFFSET + int.from_bytes(digest[: PATH_ID_BITS // 8], "big")


@dataclass(frozen=True, slots=True)
class _Declared:
    id: int | None
    path: tuple[str, ...]
    line: int


def _parse_lines(lines: Iterable[str], source: str) -> list[_Declared]:
    declared: list[_Declared] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip("\ufeff")
        if not text or text.startswith("#"):
            continue
        match = _GOOGLE_LINE.match(text)
        category_id = int(match.group(1)) if match else None
        path_text = match.group(2) if match else text
        segments = tuple(s.strip() for s in path_text.split(">"))
        if any(not s for s in segments):
            raise TaxonomyError(
                f"{source}:{number}: empty path segment in {text!r}; "
                "write 'ID - A > B > C' or 'A > B > C' with a name between every '>'"
            )
        declared.append(_Declared(category_id, segments, number))
    if not declared:
        raise TaxonomyError(
            f"{source}: the taxonomy is empty; add lines 'ID - A > B > C' or 'A > B > C'"
        )
    return declared


def _check_duplicate_id(seen: dict[int, _Declared], item: _Declared, source: str) -> None:
    assert item.id is not None
    first = seen.get(item.id)
    if first is None:
        return
    a, b = normalise_path(first.path), normalise_path(item.path)
    if a != b and (b.startswith(a + " > ") or a.startswith(b + " > ")):
        raise TaxonomyError(
            f"{source}:{item.line}: cycle: id {item.id} is declared as "
            f"{' > '.join(item.path)!r} and, on line {first.line}, as its own ancestor or "
            f"descendant {' > '.join(first.path)!r}; give each category its own id"
        )
    raise TaxonomyError(
        f"{source}:{item.line}: duplicate id {item.id} (first on line {first.line} as "
        f"{' > '.join(first.path)!r}); give each category its own id"
    )


def _build(declared: list[_Declared], source: str) -> dict[int, Category]:
    """Declared lines → categories, ancestors created implicitly, in file order."""
    ids_seen: dict[int, _Declared] = {}
    for item in declared:
        if item.id is not None:
            _check_duplicate_id(ids_seen, item, source)
            ids_seen[item.id] = item
    # Each normalised path → (id, line); explicit ids win over path-derived ones.
    by_key: dict[str, tuple[int, int]] = {}
    for item in declared:
        key = normalise_path(item.path)
        if key in by_key:
            raise TaxonomyError(
                f"{source}:{item.line}: duplicate path {' > '.join(item.path)!r} (first on "
                f"line {by_key[key][1]}); remove one of the two lines"
            )
        by_key[key] = (item.id if item.id is not None else path_id(item.path), item.line)
    categories: dict[int, Category] = {}
    owner_line: dict[int, int] = {}
    key_of: dict[int, str] = {}
    for item in declared:
        parent: int | None = None
        key = ""
        for depth in range(1, len(item.path) + 1):
            path = item.path[:depth]
            segment = normalise_segment(path[-1])
            key = f"{key} > {segment}" if key else segment  # == normalise_path(path)
            if key not in by_key:  # an ancestor nobody declared: create it
                by_key[key] = (path_id(path), item.line)
            category_id, line = by_key[key]
            existing = categories.get(category_id)
            if existing is None:
                categories[category_id] = Category(category_id, path[-1], path, parent, depth)
                owner_line[category_id] = line
                key_of[category_id] = key
            elif key_of[category_id] != key:
                raise TaxonomyError(
                    f"{source}:{line}: id {category_id} of {' > '.join(path)!r} collides with "
                    f"{existing.path_str!r} (line {owner_line[category_id]}); "
                    "give one of them an explicit id"
                )
            parent = category_id
    return categories


class Taxonomy:
    """An immutable category tree. Build with ``load`` or ``from_lines``."""

    def __init__(self, categories: dict[int, Category], source: str) -> None:
        self._source = source
        self._categories = dict(categories)
        self._ids = tuple(self._categories)
        self._by_key = {normalise_path(c.path): c.id for c in self._categories.values()}
        children: dict[int, list[int]] = {i: [] for i in self._ids}
        for category in self._categories.values():
            if category.parent_id is not None:
                children[category.parent_id].append(category.id)
        self._children = {k: tuple(v) for k, v in children.items()}
        self._ancestors: dict[int, tuple[int, ...]] = {}
        for category in self._categories.values():  # parents precede children
            parent = category.parent_id
            self._ancestors[category.id] = (
                () if parent is None else (*self._ancestors[parent], parent)
            )
        self._leaves = tuple(i for i in self._ids if not self._children[i])
        self._roots = tuple(i for i in self._ids if self._categories[i].parent_id is None)
        self._depth = max(c.level for c in self._categories.values())
        canonical = "".join(f"{i}\t{self._categories[i].path_str}\n" for i in sorted(self._ids))
        self._hash = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: Path | str) -> Taxonomy:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise TaxonomyError(
                f"{path}: taxonomy file not found; pass --taxonomy or set "
                "CATSTREAM_TAXONOMY_PATH to an existing file"
            ) from exc
        except UnicodeDecodeError as exc:
            raise TaxonomyError(f"{path}: not UTF-8 text; re-save the file as UTF-8") from exc
        return cls.from_lines(text.splitlines(), source=str(path))

    @classmethod
    def from_lines(cls, lines: Iterable[str], source: str = "<lines>") -> Taxonomy:
        return cls(_build(_parse_lines(lines, source), source), source)

    # ------------------------------------------------------------------- lookup

    @property
    def source(self) -> str:
        return self._source

    @property
    def ids(self) -> tuple[int, ...]:
        """Every id, parents before children (file order)."""
        return self._ids

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def hash(self) -> str:
        """sha256 over the sorted ``id<TAB>path`` lines: equal trees, equal hash."""
        return self._hash

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, category_id: object) -> bool:
        return category_id in self._categories

    def __iter__(self) -> Iterator[Category]:
        return iter(self._categories.values())

    def get(self, category_id: int) -> Category:
        try:
            return self._categories[category_id]
        except KeyError:
            raise UnknownCategoryError(
                f"category id {category_id} is not in taxonomy {self._source}; "
                "check that the labels and the model use the same taxonomy"
            ) from None

    def path(self, category_id: int) -> tuple[str, ...]:
        return self.get(category_id).path

    def path_str(self, category_id: int) -> str:
        return self.get(category_id).path_str

    def name(self, category_id: int) -> str:
        return self.get(category_id).name

    def level(self, category_id: int) -> int:
        return self.get(category_id).level

    def parent(self, category_id: int) -> int | None:
        return self.get(category_id).parent_id

    def children(self, category_id: int) -> tuple[int, ...]:
        self.get(category_id)
        return self._children[category_id]

    def ancestors(self, category_id: int) -> tuple[int, ...]:
        """Ancestor ids, root first, excluding the category itself."""
        self.get(category_id)
        return self._ancestors[category_id]

    def ancestors_and_self(self, category_id: int) -> tuple[int, ...]:
        return (*self.ancestors(category_id), category_id)

    def ancestor_at_level(self, category_id: int, level: int) -> int | None:
        """The ancestor (or self) at ``level`` (1 = top); None when shallower than that."""
        chain = self.ancestors_and_self(category_id)
        return chain[level - 1] if 1 <= level <= len(chain) else None

    def descendants(self, category_id: int) -> tuple[int, ...]:
        """Every id below the category (pre-order), excluding itself."""
        found: list[int] = []
        stack = list(reversed(self.children(category_id)))
        while stack:
            current = stack.pop()
            found.append(current)
            stack.extend(reversed(self._children[current]))
        return tuple(found)

    def is_leaf(self, category_id: int) -> bool:
        return not self.children(category_id)

    def leaves(self) -> list[int]:
        return list(self._leaves)

    def roots(self) -> list[int]:
        return list(self._roots)

    def closure(self, category_ids: Iterable[int]) -> set[int]:
        """The ids plus all their ancestors."""
        closed: set[int] = set()
        for category_id in category_ids:
            closed.update(self.ancestors_and_self(category_id))
        return closed

    def find_path(self, path: str | Iterable[str]) -> int | None:
        """The id of a path (case/whitespace-insensitive, '>' '›' '»'), or None."""
        return self._by_key.get(normalise_path(path))

    def by_path(self, path: str | Iterable[str]) -> int:
        found = self.find_path(path)
        if found is None:
            shown = path if isinstance(path, str) else " > ".join(path)
            raise UnknownCategoryError(self._unknown_path_message(shown))
        return found

    def resolve(self, value: str | int) -> int:
        """An id (int or digits) or a path → id; UnknownCategoryError with suggestions."""
        if isinstance(value, bool):
            raise UnknownCategoryError(f"{value!r} is not a category id or path")
        if isinstance(value, int):
            self.get(value)
            return value
        text = value.strip()
        if text.isdigit() and int(text) in self._categories:
            return int(text)
        return self.by_path(text)

    def suggest(self, path: str, n: int = 3) -> list[str]:
        """Close category paths, for error messages."""
        key = normalise_path(path)
        leaf = key.rsplit(" > ", 1)[-1]
        same_name = [
            c.path_str for c in self._categories.values() if normalise_segment(c.name) == leaf
        ]
        close = difflib.get_close_matches(key, list(self._by_key), n=n, cutoff=0.6)
        suggestions = same_name + [self.path_str(self._by_key[k]) for k in close]
        return list(dict.fromkeys(suggestions))[:n]

    def _unknown_path_message(self, path: str) -> str:
        suggestions = self.suggest(path)
        hint = (
            "did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
            if suggestions
            else "use a full path from the root, e.g. 'A > B > C', or a category id"
        )
        return f"unknown category path {path!r} in taxonomy {self._source}; {hint}"

    def __repr__(self) -> str:
        return f"Taxonomy({self._source!r}, categories={len(self)}, depth={self.depth})"


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> Taxonomy:
    del mtime_ns  # part of the cache key only: an edited file is reloaded
    return Taxonomy.load(Path(path))


def load_taxonomy(path: Path | str) -> Taxonomy:
    """``Taxonomy.load`` cached per (path, modification time), for hot call sites."""
    resolved = Path(path).resolve()
    try:
        mtime = resolved.stat().st_mtime_ns
    except FileNotFoundError:
        return Taxonomy.load(resolved)  # raises the helpful TaxonomyError
    return _load_cached(str(resolved), mtime)
