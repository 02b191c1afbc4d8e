"""Find taxonomy categories by any words of their path, fast enough to search as you type.

``TaxonomySearch(taxonomy)`` builds an inverted index once: every word of every
category's full path (``Toys & Games > Toys > Dolls``: toys, games, dolls) → the ids
of the categories whose path holds it. A query's words must all match (AND), each
as a word prefix (``dino fig`` finds ``... > Dinosaur Figures``). The vocabulary is
sorted, so a prefix is a ``bisect`` range. Results are ranked: more query words in
the category's own name first, then deeper categories (labels want leaves), then
the path alphabetically. On the 5,582 Google categories a query takes well under a
millisecond (``tests/unit/test_taxonomy_search.py`` holds it under 100 ms).
"""

from __future__ import annotations

import bisect
import heapq
import re
import unicodedata
from dataclasses import dataclass

from catstream.taxonomy import Taxonomy

MAX_QUERY_CHARS = 200
MAX_QUERY_WORDS = 8
_WORD = re.compile(r"[0-9a-z]+")


def words(text: str) -> list[str]:
    """Lower-case ASCII-folded words of ``text`` (``Café`` → ``cafe``)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _WORD.findall(folded)


@dataclass(frozen=True)
class CategoryHit:
    id: int
    path: str
    level: int

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "path": self.path, "level": self.level}


class TaxonomySearch:
    def __init__(self, taxonomy: Taxonomy) -> None:
        self.taxonomy = taxonomy
        index: dict[str, set[int]] = {}
        self._name_words: dict[int, frozenset[str]] = {}
        self._paths = {c: taxonomy.path_str(c) for c in taxonomy.ids}
        self._levels = {c: taxonomy.level(c) for c in taxonomy.ids}
        for category_id in taxonomy.ids:
            for word in words(self._paths[category_id]):
                index.setdefault(word, set()).add(category_id)
            self._name_words[category_id] = frozenset(words(taxonomy.name(category_id)))
        self._vocabulary = sorted(index)
        self._postings = [frozenset(index[w]) for w in self._vocabulary]

    def _matching(self, prefix: str) -> set[int]:
        start = bisect.bisect_left(self._vocabulary, prefix)
        found: set[int] = set()
        for position in range(start, len(self._vocabulary)):
            if not self._vocabulary[position].startswith(prefix):
                break
            found |= self._postings[position]
        return found

    def search(self, query: str, limit: int = 20) -> list[CategoryHit]:
        """Categories whose path holds every word of ``query`` (as a prefix), best first.

        Raises ValueError, saying what to send, for a query that is too long.
        """
        if len(query) > MAX_QUERY_CHARS:
            raise ValueError(f"the search is {len(query)} characters; use at most a few words")
        wanted = words(query)[:MAX_QUERY_WORDS]
        if not wanted:
            return []
        # Rarest word first: later intersections stay small.
        sets = sorted((self._matching(w) for w in wanted), key=len)
        found = set(sets[0])
        for other in sets[1:]:
            found &= other
            if not found:
                return []

        def rank(category_id: int) -> tuple[int, int, str]:
            name = self._name_words[category_id]
            in_name = sum(any(n.startswith(w) for n in name) for w in wanted)
            return (-in_name, -self._levels[category_id], self._paths[category_id])

        best = heapq.nsmallest(max(limit, 0), found, key=rank)
        return [CategoryHit(c, self._paths[c], self._levels[c]) for c in best]
