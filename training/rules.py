"""The legacy rule labeller: YAML rules → positive-only category labels.

A rules file::

    version: 1
    defaults: {plurals: true}          # optional
    rules:
      - category: Apparel & Accessories > Clothing > Dresses   # a path or an id
        name: dresses                  # optional; shown by explain()
        title: [dress, sundress]       # any word/phrase, word-bounded, case-insensitive
        regex: ['\\bmaxi\\b']          # any regex on title or description
        raw_category: [dresses, women > dresses]  # any phrase in a segment of the feed's
                                       # category path; 'a > b': in consecutive segments
        brand: [Some Brand]            # brand equals one of these
        not_title: [dress shirt]       # negations: any match vetoes the rule
        not_regex: [], not_raw_category: [], not_brand: []
        match: any                     # any (default): one positive condition fires the rule;
                                       # all: every positive condition given must match
        plurals: true                  # also match the singular/plural of title phrases

The labeller yields each fired category with its ancestors (labels are positive-only:
a category that no rule fires is unknown, not negative). Everything is compiled once
at load; errors (``RulesError``) name the file and the rule.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from catstream.taxonomy import Taxonomy
from schemas.events import NormalisedProduct

POSITIVE_KEYS = ("title", "regex", "raw_category", "brand")
NEGATIVE_KEYS = ("not_title", "not_regex", "not_raw_category", "not_brand")
OTHER_KEYS = ("category", "name", "match", "plurals")
_RAW_CATEGORY_DELIMITERS = re.compile(r"\s*(?:>|›|»|/|\||\\)\s*")
_SPACES = re.compile(r"\s+")
_VOWELS = set("aeiou")
_WORD = re.compile(r"\w+")
# libyaml's loader is ~10x faster on the starter file; fall back when it is not built.
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RulesError(ValueError):
    """The rules file is invalid; the message names the file and the rule to fix."""


def fold(text: str) -> str:
    """The form rules match on: NFKC, case-folded, single spaces."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


# ---------------------------------------------------------------- products


@dataclass(frozen=True, slots=True)
class ProductText:
    """The fields rules (and text baselines) read, already folded."""

    title: str
    description: str
    brand: str
    category_path: tuple[str, ...]

    @property
    def raw_category(self) -> str:
        return " > ".join(self.category_path)


def product_text(product: NormalisedProduct | Mapping[str, Any]) -> ProductText:
    """Fold a normalised product (or a dict of its fields, e.g. a labels line)."""
    fields: Mapping[str, Any] = (
        product.model_dump() if isinstance(product, NormalisedProduct) else product
    )
    path = [str(s) for s in fields.get("category_path") or [] if str(s).strip()]
    if not path and fields.get("raw_category"):
        # Unnormalised input: split the raw category the way feeds usually write it.
        path = [s for s in _RAW_CATEGORY_DELIMITERS.split(str(fields["raw_category"])) if s]
    return ProductText(
        title=fold(str(fields.get("title") or "")),
        description=fold(str(fields.get("description") or "")),
        brand=fold(str(fields.get("brand") or "")),
        category_path=tuple(fold(s) for s in path),
    )


# ------------------------------------------------------------------ phrases


def word_forms(word: str) -> set[str]:
    """A word and its English singular/plural (a heuristic, good for product nouns)."""
    forms = {word}
    if len(word) < 3 or not word.isalpha():
        return forms
    if word.endswith("ies") and len(word) > 4:
        forms.add(word[:-3] + "y")
    elif word.endswith(("ches", "shes", "sses", "xes", "zes")):
        forms.add(word[:-2])
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        forms.add(word[:-1])
    elif word.endswith("y") and word[-2] not in _VOWELS:
        forms.add(word[:-1] + "ies")
    elif word.endswith(("ch", "sh", "ss", "x", "z")):
        forms.add(word + "es")
    elif not word.endswith("s"):
        forms.add(word + "s")
    return forms


def phrase_pattern(phrase: str, plurals: bool) -> str:
    """A regex for a phrase: word-bounded, spaces match space or hyphen, last word inflected."""
    words = fold(phrase).replace("-", " ").split()
    if not words:
        return ""
    parts = [re.escape(w) for w in words[:-1]]
    last = sorted(word_forms(words[-1]) if plurals else {words[-1]}, key=len, reverse=True)
    parts.append("(?:" + "|".join(re.escape(w) for w in last) + ")")
    return r"(?<!\w)" + r"[\s\-]+".join(parts) + r"(?!\w)"


def phrase_anchors(phrase: str, plurals: bool) -> set[str]:
    """Words of which one must be a token of any text the phrase matches (its last word)."""
    words = fold(phrase).replace("-", " ").split()
    if not words:
        return set()
    forms = word_forms(words[-1]) if plurals else {words[-1]}
    return {tokens[-1] for form in forms if (tokens := _WORD.findall(form))}


def text_tokens(text: ProductText) -> set[str]:
    """The word tokens phrase anchors are looked up in (title and raw category)."""
    tokens = set(_WORD.findall(text.title))
    for segment in text.category_path:
        tokens.update(_WORD.findall(segment))
    return tokens


def segments_pattern(value: str, plurals: bool) -> str:
    """A raw-category condition: a phrase, or phrases in consecutive segments ('a > b').

    It is searched in the path joined by ' > '; phrases never span a '>' because
    their words are joined by spaces or hyphens only.
    """
    pieces = [phrase_pattern(p, plurals) for p in value.split(">") if p.strip()]
    return r"[^>]*>[^>]*?".join(pieces)


def _any_of(patterns: Iterable[str]) -> re.Pattern[str] | None:
    kept = [p for p in patterns if p]
    return re.compile("|".join(f"(?:{p})" for p in kept)) if kept else None


# -------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """Why a rule fired: its name, category, the condition and the text it matched."""

    rule: str
    category_id: int
    category_path: str
    condition: str
    matched: str


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    category_id: int
    category_path: str
    level: int
    match_all: bool
    title: re.Pattern[str] | None
    regex: re.Pattern[str] | None
    raw_category: re.Pattern[str] | None
    brand: frozenset[str]
    not_title: re.Pattern[str] | None
    not_regex: re.Pattern[str] | None
    not_raw_category: re.Pattern[str] | None
    not_brand: frozenset[str]
    # Tokens of which one must occur for the title/raw-category phrases to match;
    # None when the rule has a regex and so must always be evaluated.
    anchors: frozenset[str] | None

    def _positives(self, text: ProductText) -> list[tuple[str, str]]:
        """(condition, matched text) for each positive condition that matched."""
        found: list[tuple[str, str]] = []
        if self.title and (m := self.title.search(text.title)):
            found.append(("title", m.group(0)))
        if self.regex and (
            (m := self.regex.search(text.title)) or (m := self.regex.search(text.description))
        ):
            found.append(("regex", m.group(0)))
        if self.raw_category and (m := self.raw_category.search(text.raw_category)):
            found.append(("raw_category", m.group(0)))
        if text.brand and text.brand in self.brand:
            found.append(("brand", text.brand))
        return found

    def _vetoed(self, text: ProductText) -> bool:
        return bool(
            (self.not_title and self.not_title.search(text.title))
            or (
                self.not_regex
                and (self.not_regex.search(text.title) or self.not_regex.search(text.description))
            )
            or (self.not_raw_category and self.not_raw_category.search(text.raw_category))
            or (text.brand and text.brand in self.not_brand)
        )

    @property
    def positive_count(self) -> int:
        return sum(1 for c in (self.title, self.regex, self.raw_category, self.brand or None) if c)

    def evaluate(self, text: ProductText) -> RuleMatch | None:
        found = self._positives(text)
        if not found or (self.match_all and len(found) < self.positive_count):
            return None
        if self._vetoed(text):
            return None
        condition, matched = max(found, key=lambda f: len(f[1]))
        return RuleMatch(self.name, self.category_id, self.category_path, condition, matched)


def _strings(value: Any, key: str, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str | int):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise RulesError(f"{where}: '{key}' must be a string or a list of strings")
    return [str(v) for v in value if str(v).strip()]


def _regex(patterns: list[str], key: str, where: str) -> re.Pattern[str] | None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise RulesError(
                f"{where}: invalid regex in '{key}': {pattern!r} ({exc}); fix or quote it"
            ) from exc
    # Text is folded before matching, so regexes are case-insensitive too.
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


def compile_rule(
    spec: Any, index: int, taxonomy: Taxonomy, source: str, defaults: Mapping[str, Any]
) -> Rule:
    """One YAML rule mapping → a compiled Rule (RulesError names file and rule)."""
    where = f"{source}: rule {index + 1}"
    if not isinstance(spec, dict):
        raise RulesError(f"{where}: a rule must be a mapping with 'category' and conditions")
    if "category" not in spec:
        raise RulesError(f"{where}: missing 'category' (a taxonomy path or id)")
    where = f"{source}: rule {index + 1} ({spec.get('name') or spec['category']})"
    unknown = set(spec) - set(POSITIVE_KEYS + NEGATIVE_KEYS + OTHER_KEYS)
    if unknown:
        allowed = ", ".join(POSITIVE_KEYS + NEGATIVE_KEYS + OTHER_KEYS)
        raise RulesError(f"{where}: unknown keys {sorted(unknown)}; allowed keys: {allowed}")
    try:
        category_id = taxonomy.resolve(spec["category"])
    except KeyError as exc:
        raise RulesError(f"{where}: {exc}") from None
    match = spec.get("match", "any")
    if match not in ("any", "all"):
        raise RulesError(f"{where}: 'match' must be 'any' or 'all', not {match!r}")
    plurals = spec.get("plurals", defaults.get("plurals", True))
    if not isinstance(plurals, bool):
        raise RulesError(f"{where}: 'plurals' must be true or false")
    values = {k: _strings(spec.get(k), k, where) for k in POSITIVE_KEYS + NEGATIVE_KEYS}
    if not any(values[k] for k in POSITIVE_KEYS):
        raise RulesError(f"{where}: no positive condition; give one of {', '.join(POSITIVE_KEYS)}")
    anchors: set[str] = set()
    for phrase in values["title"] + values["raw_category"]:
        anchors |= phrase_anchors(phrase, plurals)
    return Rule(
        name=str(spec.get("name") or taxonomy.path_str(category_id)),
        category_id=category_id,
        category_path=taxonomy.path_str(category_id),
        level=taxonomy.level(category_id),
        match_all=match == "all",
        title=_any_of(phrase_pattern(p, plurals) for p in values["title"]),
        regex=_regex(values["regex"], "regex", where),
        raw_category=_any_of(segments_pattern(p, plurals) for p in values["raw_category"]),
        brand=frozenset(fold(b) for b in values["brand"]),
        not_title=_any_of(phrase_pattern(p, plurals) for p in values["not_title"]),
        not_regex=_regex(values["not_regex"], "not_regex", where),
        not_raw_category=_any_of(segments_pattern(p, plurals) for p in values["not_raw_category"]),
        not_brand=frozenset(fold(b) for b in values["not_brand"]),
        anchors=None if values["regex"] else frozenset(anchors),
    )


class RuleLabeller:
    """Compiled rules over one taxonomy. Build with ``load`` or ``from_mapping``."""

    def __init__(self, rules: Sequence[Rule], taxonomy: Taxonomy, source: str) -> None:
        self.rules = tuple(rules)
        self.taxonomy = taxonomy
        self.source = source
        # Index rules by anchor token and brand so a product evaluates only the few
        # rules that could fire (rules stay in file order for explain()).
        self._always: list[int] = []
        self._by_token: dict[str, list[int]] = {}
        self._by_brand: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            if rule.anchors is None:
                self._always.append(index)
                continue
            for token in rule.anchors:
                self._by_token.setdefault(token, []).append(index)
            for brand in rule.brand:
                self._by_brand.setdefault(brand, []).append(index)

    def _candidates(self, text: ProductText) -> list[Rule]:
        chosen = set(self._always)
        for token in text_tokens(text):
            chosen.update(self._by_token.get(token, ()))
        chosen.update(self._by_brand.get(text.brand, ()))
        return [self.rules[i] for i in sorted(chosen)]

    @classmethod
    def load(cls, path: Path | str, taxonomy: Taxonomy) -> RuleLabeller:
        path = Path(path)
        try:
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        except FileNotFoundError as exc:
            raise RulesError(
                f"{path}: rules file not found; pass an existing --rules file"
            ) from exc
        except yaml.YAMLError as exc:
            raise RulesError(f"{path}: not valid YAML ({exc}); fix the syntax there") from exc
        return cls.from_mapping(document, taxonomy, source=str(path))

    @classmethod
    def from_mapping(
        cls, document: Any, taxonomy: Taxonomy, source: str = "<rules>"
    ) -> RuleLabeller:
        if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
            raise RulesError(f"{source}: expected a mapping with a 'rules:' list of rules")
        if not document["rules"]:
            raise RulesError(f"{source}: 'rules' is empty; add at least one rule")
        defaults = document.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise RulesError(f"{source}: 'defaults' must be a mapping, e.g. {{plurals: true}}")
        rules = [
            compile_rule(spec, i, taxonomy, source, defaults)
            for i, spec in enumerate(document["rules"])
        ]
        return cls(rules, taxonomy, source)

    @property
    def categories(self) -> set[int]:
        """Every category some rule can fire."""
        return {r.category_id for r in self.rules}

    def explain(self, product: NormalisedProduct | Mapping[str, Any]) -> list[RuleMatch]:
        """Every rule that fired on the product, in file order."""
        text = product_text(product)
        return [m for rule in self._candidates(text) if (m := rule.evaluate(text)) is not None]

    def fired(self, product: NormalisedProduct | Mapping[str, Any]) -> set[int]:
        """The categories rules fired on, without ancestor closure."""
        return {m.category_id for m in self.explain(product)}

    def label(self, product: NormalisedProduct | Mapping[str, Any]) -> set[int]:
        """Positive-only labels: fired categories and all their ancestors."""
        return self.taxonomy.closure(self.fired(product))

    def best(self, product: NormalisedProduct | Mapping[str, Any]) -> RuleMatch | None:
        """The single most specific match: deepest category, then longest matched text."""
        matches = self.explain(product)
        if not matches:
            return None
        return max(
            matches,
            key=lambda m: (self.taxonomy.level(m.category_id), len(m.matched)),
        )
