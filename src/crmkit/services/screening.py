"""Duplicate screening: which existing parties a new lead probably is.

Candidates come from two kinds of evidence:

* **exact keys** — a phone (E.164), an email, a website or the organisation's domain
  behind an email or a website, looked up among contact points (B-tree indexes);
* **the name** — the name is folded to a Latin *skeleton* (:func:`crmkit.identity.name_skeleton`:
  legal forms, quotes, case and Cyrillic/Latin spelling removed), split into blocking keys
  (each word, the sorted words, the words run together) and looked up in
  ``party_match_key``.  Words with a typo are first corrected against the vocabulary of
  known words (``match_word``): every known word one typo away shares a one-letter-less
  spelling with it (``match_word_variant``), and the whole name is looked up again with
  each corrected word in place.  (``deep`` searches also ask a trigram index: ``pg_trgm``
  on PostgreSQL, an FTS5 ``trigram`` table on SQLite.)  The parties found are scored with
  rapidfuzz.

Keys are kept on every write (create, rename, bulk import, merge) by :func:`index_names`.
Screening sees the whole base: a lead creator must learn that a colleague already works
with this company.  What the actor may not see of a candidate (its owner, a link to it) is
left out of the answer.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import TYPE_CHECKING, Any

import attrs
from rapidfuzz import fuzz
from rapidfuzz import process as fuzz_process
from rapidfuzz.distance import DamerauLevenshtein
from sqlalchemy import bindparam, case, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from crmkit.identity import (
    contact_key,
    domain_key,
    name_key,
    name_match_keys,
    name_skeleton,
    one_letter_variants,
    whole_name_key,
)
from crmkit.model import MatchWord, MatchWordVariant, Party, PartyMatchKey, User
from crmkit.model.party import MATCH_WORD_FTS
from crmkit.services.bulk import text_array_literal

if TYPE_CHECKING:
    from crmkit.services.unit import UnitOfWork

#: How many parties one blocking key may bring in (a very common word brings in some of
#: them; rarer words and the whole-name keys carry the match).
POSTINGS_PER_KEY = 300
#: Parties scored with rapidfuzz after blocking.
SCORED_CANDIDATES = 80
#: Similar vocabulary words tried for each word of the name.
SIMILAR_WORDS = 8
#: pg_trgm similarity from which a deep search considers a word.
DEEP_SIMILARITY = 0.2
#: A similar word must be at least this close (rapidfuzz ratio) to count.
WORD_SIMILARITY = 72
#: Known words one typo away kept for each word of the name (all of them, in practice).
ONE_TYPO_WORDS = 40
#: The similarity (0-100) given to a word one typo away.
ONE_TYPO_SCORE = 90.0

#: The weight of a shared whole-name key in ranking (a shared word weighs 1).
WHOLE_NAME = 3.0
#: Added to the rank of a party behind one of the probe's own whole-name keys.
EXACT_FIRST = 100.0

#: The score of a candidate found only by its domain (below the default threshold),
#: unless the setting ``screening.domain_blocks`` makes a shared domain block.
DOMAIN_SCORE = 75

#: The highest name score of two names whose qualifiers differ (``Мебельцентр-Тула``,
#: ``Мебельцентр-Уфа``: two branches, below the default threshold; see
#: :func:`_name_score_detail`).
BRANCH_SCORE = 80
#: Two qualifiers at least this alike (rapidfuzz ratio) may be one spelled two ways.
QUALIFIER_SIMILARITY = 70
#: The lowest name score of a name and the same name with a short qualifier
#: (``Мебельсервис``, ``Мебельсервис-Уфа``).
QUALIFIED_SCORE = 90

_DIGITS = re.compile(r"\d+")

REASON_LABELS = {
    "phone": "same phone",
    "email": "same email",
    "website": "same website",
    "domain": "same domain",
    "name": "similar name",
}


@attrs.frozen
class Candidate:
    """An existing party that a new one probably duplicates.

    ``score`` is 0-100 (100: an exact key matched); ``reasons`` name the evidence
    (``phone``, ``email``, ``website``, ``domain``, ``name``).  ``visible`` says whether the
    actor may open the party; when not, ``owner_id`` and ``owner_name`` are ``None`` and
    :meth:`as_dict` leaves out ``id`` as well: the reader learns that a colleague works
    with such a client and at which stage, never a handle to it.
    """

    id: int
    name: str
    kind: str
    score: int
    reasons: tuple[str, ...]
    name_score: int
    pipeline: str | None
    stage: str | None
    stage_label: str | None
    visible: bool
    owner_id: int | None
    owner_name: str | None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able form (the API's ``candidates``)."""
        return {
            "id": self.id if self.visible else None,
            "name": self.name,
            "kind": self.kind,
            "score": self.score,
            "reasons": list(self.reasons),
            "stage": self.stage,
            "stage_label": self.stage_label,
            "visible": self.visible,
            "owner_id": self.owner_id,
            "owner_name": self.owner_name,
        }


@attrs.frozen
class Probe:
    """What a screening compares: a name and contact values as typed."""

    name: str = ""
    kind: str = "organisation"
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    websites: tuple[str, ...] = ()

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Probe:
        """A probe from party input (``name``/``first_name``/``last_name``, ``contact_points``)."""
        kind = values.get("kind") or "organisation"
        name = (values.get("name") or "").strip()
        if not name and kind == "person":
            name = " ".join(p for p in (values.get("first_name"), values.get("last_name")) if p)
        found: dict[str, list[str]] = defaultdict(list)
        for point in values.get("contact_points") or ():
            if isinstance(point, Mapping) and point.get("value"):
                found[str(point.get("kind"))].append(str(point["value"]))
        return cls(
            name=name,
            kind=kind,
            phones=tuple(found["phone"]),
            emails=tuple(found["email"]),
            websites=tuple(found["website"]),
        )

    @property
    def empty(self) -> bool:
        return not (self.name.strip() or self.phones or self.emails or self.websites)


class ScreeningService:
    """Find likely duplicates of a party before it is created (``work.screening``)."""

    def __init__(self, work: UnitOfWork) -> None:
        self.work = work

    @property
    def threshold(self) -> int:
        """The name score (0-100) from which a candidate is reported."""
        return int(self.work.crm.config["screening.threshold"])

    def candidates(
        self,
        name: str = "",
        *,
        kind: str = "organisation",
        phones: Iterable[str] = (),
        emails: Iterable[str] = (),
        websites: Iterable[str] = (),
        exclude: Iterable[int] = (),
        limit: int = 10,
        threshold: int | None = None,
        deep: bool = False,
    ) -> list[Candidate]:
        """Likely duplicates of a party with this name and these contacts, best first.

        Any of the arguments may be empty (a screening screen probes with whatever was
        typed).  ``exclude`` leaves out parties (the record itself, when editing).
        """
        probe = Probe(
            name=name or "",
            kind=kind or "organisation",
            phones=tuple(p for p in phones if p and str(p).strip()),
            emails=tuple(e for e in emails if e and str(e).strip()),
            websites=tuple(w for w in websites if w and str(w).strip()),
        )
        return self.screen(probe, exclude=exclude, limit=limit, threshold=threshold, deep=deep)

    def for_values(self, values: Mapping[str, Any], **options: Any) -> list[Candidate]:
        """Likely duplicates of a party about to be created from ``values`` (service input)."""
        return self.screen(Probe.from_values(values), **options)

    def probe_text(self, typed: str, **options: Any) -> list[Candidate]:
        """Candidates for one pasted value: a phone, an email, a website or a name.

        Whatever looks like an address is also tried as a name, so ``Ромашка`` and
        ``romashka.ru`` and ``+7 916 123-45-67`` all work in one search box.
        """
        typed = (typed or "").strip()
        if not typed:
            return []
        region = self.work.crm.config["locale.phone_region"]
        phones = [typed] if contact_key("phone", typed, region=region).valid else []
        emails = [typed] if "@" in typed else []
        websites = [typed] if ("." in typed and " " not in typed and "@" not in typed) else []
        name = typed if not (phones or emails) else ""
        if websites:
            name = typed.split("//")[-1].removeprefix("www.").split(".")[0]
        probe = Probe(
            name=name, phones=tuple(phones), emails=tuple(emails), websites=tuple(websites)
        )
        return self.screen(probe, **options)

    # -- the search --------------------------------------------------------------------

    def screen(
        self,
        probe: Probe,
        *,
        exclude: Iterable[int] = (),
        limit: int = 10,
        threshold: int | None = None,
        deep: bool = False,
    ) -> list[Candidate]:
        """Candidates for a :class:`Probe`, best first, at most ``limit``.

        ``deep`` also looks for words more than one typo apart (see :meth:`similar_words`).

        Three statements at most: (1) the contact matches, the known words within one typo
        of each word of the name and the parties behind the name's own keys, as one
        ``UNION ALL``; (2) the parties behind corrected spellings; (3) the best candidates
        with what the actor may see of them (the scope predicate as a column, the owner
        joined).
        """
        if probe.empty:
            return []
        self.work.access.require("party", "create")
        threshold = self.threshold if threshold is None else threshold
        connection = self.work.session.connection()
        skeleton = name_skeleton(probe.name, probe.kind) if probe.name.strip() else ""
        weights = _name_weights(skeleton) if skeleton else {}
        whole_names = {k for k, w in weights.items() if w >= WHOLE_NAME}
        words = sorted({w for w in skeleton.split() if len(w) >= 4})
        first = _Union(connection)
        exact, domains = self._add_contact_matches(first, probe)
        for index, word in enumerate(words):
            variants = first.values(one_letter_variants(word))
            first.add(
                f"SELECT DISTINCT 'v{index}' AS tag, word AS a, CAST(NULL AS TEXT) AS b, "
                "CAST(NULL AS TEXT) AS c, CAST(NULL AS BIGINT) AS party_id "
                f"FROM match_word_variant WHERE variant IN ({variants}) LIMIT 200"
            )
        first.add_postings(weights)
        fetched = set(weights)
        reasons: dict[int, set[str]] = defaultdict(set)
        known: dict[int, list[str]] = defaultdict(list)
        postings: dict[str, list[int]] = defaultdict(list)
        for tag, a, b, c, party_id in first.rows():
            if tag == "p":
                postings[a].append(party_id)
            elif tag == "c":
                if (a, b) in exact:
                    reasons[party_id].add(a)
                elif c and c in domains:
                    reasons[party_id].add("domain")
            else:
                known[int(tag[1:])].append(a)
        if words:
            more: dict[str, float] = {}
            whole: dict[str, float] = {}
            several = len(skeleton.split()) > 1
            for index, word in enumerate(words):
                rows = known[index]
                if deep:
                    rows += self._trigram_words(connection, word)
                closest = _closest(word, rows)
                # a word's own postings: a few spellings in a longer name (its other words
                # carry the match), every one-typo spelling when the word is the whole name
                # (from five letters: one typo in four is not similar enough to report)
                spellings = closest if not several and len(word) >= 5 else closest[:SIMILAR_WORDS]
                for similar, similarity in spellings:
                    key = f"w:{similar}"[:120]
                    more[key] = max(more.get(key, 0.0), weights.get(key, 0.0), similarity / 100)
                if several:
                    for key, similarity in _corrected_names(skeleton, word, closest):
                        whole[key] = max(whole.get(key, 0.0), WHOLE_NAME * similarity / 100)
            weights.update(more)
            for key, weight in whole.items():
                weights[key] = max(weights.get(key, 0.0), weight)
            second = _Union(connection)
            second.add_postings(k for k in more if k not in fetched)
            second.add_postings_of([k for k in whole if k not in fetched])
            for _, key, _, _, party_id in second.rows():
                postings[key].append(party_id)
        ids = set(reasons) | set(_best_ranked(postings, weights, whole_names))
        ids -= {int(i) for i in exclude}
        if not ids:
            return []
        scored = []
        typed_key = name_key(probe.name, probe.kind) if skeleton else ""
        domain_blocks = bool(self.work.crm.config["screening.domain_blocks"])
        for row in self._details(connection, sorted(ids)):
            name_score, plain = (
                _name_score_detail(skeleton, name_skeleton(row.name, row.kind))
                if skeleton
                else (0.0, 0.0)
            )
            why = set(reasons.get(row.id, ()))
            if plain >= threshold:  # a branch elsewhere is shown at its capped score
                why.add("name")
            if not why:
                continue
            if why - {"name", "domain"}:
                score = 100
            elif "domain" in why and domain_blocks:  # the setting: a domain blocks
                score = max(name_score, self.threshold)
            else:
                # a shared domain alone suggests a colleague or a branch: shown, not blocking
                score = max(name_score, DOMAIN_SCORE)
            # equal skeletons (``Илаль`` and ``Илал`` both read ``ilal``): the name as
            # spelled decides which is shown first
            spelled = fuzz.ratio(typed_key, row.name_key) if typed_key else 0
            scored.append((score, name_score, spelled, row, why))
        scored.sort(key=lambda s: (-s[0], -s[1], -s[2], s[3].id))
        return [
            self._candidate(score, name_score, row, why)
            for score, name_score, _, row, why in scored[:limit]
        ]

    def _add_contact_matches(
        self, query: _Union, probe: Probe
    ) -> tuple[set[tuple[str, str]], set[str]]:
        """Add the look-up of the probe's contacts to ``query``; the exact ``(kind, key)``
        pairs and the domains it looks for."""
        region = self.work.crm.config["locale.phone_region"]
        clauses = []
        exact: set[tuple[str, str]] = set()
        domains: set[str] = set()
        for kind, values in (
            ("phone", probe.phones),
            ("email", probe.emails),
            ("website", probe.websites),
        ):
            keys = set()
            for value in values:
                normalized = contact_key(kind, str(value), region=region)
                if not normalized.key:
                    continue
                if kind == "phone" and sum(c.isdigit() for c in normalized.key) < 6:
                    continue  # "12-34" matches too much to mean anything
                keys.add(normalized.key)
                domain = domain_key(kind, normalized.key)
                if domain:
                    domains.add(domain)
            if keys:
                exact.update((kind, key) for key in keys)
                clauses.append(
                    f"(kind = {query.value(kind)} AND key IN ({query.values(sorted(keys))}))"
                )
        if domains:
            clauses.append(f"domain IN ({query.values(sorted(domains))})")
        if clauses:
            query.add(
                "SELECT 'c' AS tag, kind AS a, key AS b, domain AS c, party_id "
                f"FROM contact_point WHERE {' OR '.join(clauses)} LIMIT 500"
            )
        return exact, domains

    def _details(self, connection: Connection, ids: list[int]) -> list[Any]:
        """The live parties among ``ids``, each with whether the actor may see it and its
        owner's name: one statement, the scope predicate evaluated as a column."""
        visible = self.work.parties.visible("read")
        return list(
            connection.execute(
                select(
                    Party.id,
                    Party.name,
                    Party.name_key,
                    Party.kind,
                    Party.pipeline,
                    Party.stage,
                    Party.owner_id,
                    case((visible, 1), else_=0).label("visible"),
                    User.display_name,
                    User.username,
                )
                .outerjoin(User, User.id == Party.owner_id)
                .where(Party.id.in_(ids), Party.merged_into_id.is_(None))
            )
        )

    def _candidate(self, score: float, name_score: float, row: Any, why: set[str]) -> Candidate:
        seen = bool(row.visible)
        return Candidate(
            id=row.id,
            name=row.name,
            kind=row.kind,
            score=round(score),
            reasons=tuple(r for r in REASON_LABELS if r in why),
            name_score=round(name_score),
            pipeline=row.pipeline,
            stage=row.stage,
            stage_label=self._stage_label(row.pipeline, row.stage),
            visible=seen,
            owner_id=row.owner_id if seen else None,
            owner_name=(row.display_name or row.username) if seen and row.owner_id else None,
        )

    def similar_words(
        self, connection: Connection, word: str, *, deep: bool = False
    ) -> list[tuple[str, float]]:
        """Known words spelled like ``word`` (itself included when known), with a 0-100 score.

        The quick way (every interactive screening) finds the words within one typo: they
        share a one-letter-less variant (``match_word_variant``, one indexed ``IN``).
        ``deep`` also searches the trigram index for words further apart: ``pg_trgm``'s
        ``%`` on PostgreSQL, the FTS5 trigram table on SQLite (tens of milliseconds on a
        large vocabulary: for the whole-base report, not for typing).
        """
        rows = list(
            connection.execute(
                select(MatchWordVariant.word)
                .where(MatchWordVariant.variant.in_(one_letter_variants(word)))
                .distinct()
                .limit(200)
            ).scalars()
        )
        if deep and len(word) >= 4:
            rows += self._trigram_words(connection, word)
        return _closest(word, rows)

    def _trigram_words(self, connection: Connection, word: str) -> list[str]:
        if connection.dialect.name == "postgresql":
            # the default 0.3 misses two typos in an eight-letter word; for this transaction
            connection.execute(
                text("SELECT set_config('pg_trgm.similarity_threshold', :t, true)"),
                {"t": str(DEEP_SIMILARITY)},
            )
            return list(
                connection.execute(
                    text(
                        "SELECT word FROM match_word WHERE word OPERATOR(public.%) :word "
                        "ORDER BY public.similarity(word, :word) DESC LIMIT :n"
                    ),
                    {"word": word, "n": SIMILAR_WORDS * 3},
                ).scalars()
            )
        if connection.dialect.name == "sqlite":
            grams = sorted({word[i : i + 3] for i in range(len(word) - 2)})
            query = " OR ".join('"' + g.replace('"', '""') + '"' for g in grams)
            return list(
                connection.execute(
                    text(
                        f"SELECT word FROM {MATCH_WORD_FTS} WHERE {MATCH_WORD_FTS} MATCH :q "
                        "ORDER BY rank LIMIT :n"
                    ),
                    {"q": query, "n": SIMILAR_WORDS * 3},
                ).scalars()
            )
        return []

    def _stage_label(self, pipeline: str | None, stage: str | None) -> str | None:
        if not pipeline or not stage:
            return stage
        definition = self.work.crm.pipelines.get(pipeline)
        if definition is None or not definition.has_stage(stage):
            return stage
        return str(definition.stage(stage).label)


class _Union:
    """One ``UNION ALL`` statement spelled as text, its parts added one by one.

    Each part yields ``(tag, a, b, c, party_id)``.  Its shape changes with the probe (the
    number of words, keys and contacts), and compiling a fresh SQLAlchemy construct each
    time costs more than running it.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.parts: list[str] = []
        self.params: dict[str, Any] = {}

    def value(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def values(self, values: Iterable[Any]) -> str:
        return ", ".join(self.value(v) for v in values)

    def add(self, sql: str) -> None:
        self.parts.append(f"SELECT * FROM ({sql}) AS u{len(self.parts)}")

    def add_postings(self, keys: Iterable[str]) -> None:
        """The parties behind each key (at most :data:`POSTINGS_PER_KEY` per key)."""
        for key in keys:
            self.add(
                "SELECT 'p' AS tag, key AS a, CAST(NULL AS TEXT) AS b, CAST(NULL AS TEXT) AS c, "
                f"party_id FROM party_match_key WHERE key = {self.value(key)} "
                f"LIMIT {POSTINGS_PER_KEY}"
            )

    def add_postings_of(self, keys: Sequence[str]) -> None:
        """The parties behind selective keys (whole names), in one part."""
        if keys:
            self.add(
                "SELECT 'p' AS tag, key AS a, CAST(NULL AS TEXT) AS b, CAST(NULL AS TEXT) AS c, "
                f"party_id FROM party_match_key WHERE key IN ({self.values(keys)}) "
                f"LIMIT {POSTINGS_PER_KEY * 4}"
            )

    def rows(self) -> list[Any]:
        if not self.parts:
            return []
        return list(self.connection.execute(text(" UNION ALL ".join(self.parts)), self.params))


def _name_weights(skeleton: str) -> dict[str, float]:
    """The blocking keys of a probe's name and how much a shared one says (words 1, the
    whole name 3)."""
    compact = "".join(skeleton.split())
    weights: dict[str, float] = {}
    for key in name_match_keys(skeleton):
        weights[key] = 1.0 if key.startswith("w:") else WHOLE_NAME
    weights[f"c:{compact}"[:120]] = WHOLE_NAME
    # a one-word name is kept under its word only, and a name typed as one word may be
    # another's words run together: either way that word is the whole name
    weights[f"w:{compact}"[:120]] = WHOLE_NAME
    return weights


def _closest(word: str, known: Sequence[str]) -> list[tuple[str, float]]:
    """The known words spelled like ``word``, closest first, with a 0-100 score.

    Every word one typo away (Damerau-Levenshtein: a letter changed, dropped, added, or two
    swapped) is kept, up to :data:`ONE_TYPO_WORDS`, then the :data:`SIMILAR_WORDS` best of
    the others by rapidfuzz ratio.  Ratio alone ranks a swap (80 for five letters) below a
    word two changes away, and in a vocabulary of a million names a word has tens of
    neighbours: the one meant was often cut.
    """
    unique = list(dict.fromkeys(known))
    typos = []
    others = []
    for choice in unique:
        edits = DamerauLevenshtein.distance(word, choice, score_cutoff=1)
        if edits == 0:
            typos.append((choice, 100.0, 100.0))
        elif edits == 1 and len(word) >= 4:
            typos.append((choice, ONE_TYPO_SCORE, fuzz.ratio(word, choice)))
        else:
            others.append(choice)
    typos.sort(key=lambda t: (-t[1], -t[2], t[0]))
    found = [(choice, score) for choice, score, _ in typos[:ONE_TYPO_WORDS]]
    rest = fuzz_process.extract(
        word, others, scorer=fuzz.ratio, limit=SIMILAR_WORDS, score_cutoff=WORD_SIMILARITY
    )
    return found + [(choice, min(score, ONE_TYPO_SCORE - 1)) for choice, score, _ in rest]


def _corrected_names(
    skeleton: str, word: str, closest: Sequence[tuple[str, float]]
) -> list[tuple[str, float]]:
    """The sorted-words keys (``n:``) of the name with ``word`` spelled as each close word.

    ``Саддар Техно`` asks for ``n:sadar tehno``: a whole name, a handful of parties, where
    the corrected word alone (``sadar``) brings in hundreds and the other word thousands.
    """
    words = skeleton.split()
    keys = []
    for similar, similarity in closest:
        if similar == word:
            continue
        spelled = sorted(similar if w == word else w for w in words)
        keys.append((("n:" + " ".join(spelled))[:120], similarity))
    return keys


def _best_ranked(
    postings: Mapping[str, list[int]], weights: Mapping[str, float], exact: Set[str] = frozenset()
) -> list[int]:
    """The :data:`SCORED_CANDIDATES` parties sharing the most telling keys with the probe.

    A rare key says more than a common one ("Маркет" is in thousands of names).  Parties
    behind the probe's own whole-name keys (``exact``) come first: a hundred namesakes
    of ``Муло`` outrank the one party of each of its forty one-typo neighbours.
    """
    rank: dict[int, float] = defaultdict(float)
    for key, found in postings.items():
        weight = weights.get(key, 0.0) / math.log2(2 + len(found))
        if key in exact:
            weight += EXACT_FIRST
        for party_id in found:
            rank[party_id] += weight
    best = sorted(rank.items(), key=lambda item: -item[1])[:SCORED_CANDIDATES]
    return [party_id for party_id, _ in best]


def _name_score(probe: str, other: str) -> float:
    """How alike two name skeletons are (0-100): word order and spacing do not matter.

    Numbers must agree: ``Автосервис 5`` and ``Автосервис 15`` are two businesses.  So must
    qualifiers (see :func:`_name_score_detail`): ``Мебельцентр-Тула`` and ``Мебельцентр-Уфа``
    are two branches, ``Мебельсервис`` and ``Мебельсервис-Уфа`` one business.
    """
    return _name_score_detail(probe, other)[0]


def _name_score_detail(probe: str, other: str) -> tuple[float, float]:
    """:func:`_name_score` and the score before a cap for different qualifiers (the two
    differ for two branches: screening shows a branch whose plain score reaches the
    threshold, at the capped score, so it never blocks).

    The words the names share (equal, or one typo apart from five letters) are set aside;
    what is left of each is its *qualifier* (``тула`` of ``Мебельцентр-Тула``).  When both
    names keep a qualifier and the two differ clearly (more than one edit apart and a
    rapidfuzz ratio under :data:`QUALIFIER_SIMILARITY`), the score is at most
    :data:`BRANCH_SCORE`.  When only one name has a qualifier and it is short beside the
    shared words (at most half their length), the score is at least
    :data:`QUALIFIED_SCORE`: ``ИП Техномастер Тула`` is ``ООО «Техномастер»``.
    """
    if not probe or not other:
        return 0.0, 0.0
    if _DIGITS.findall(probe) != _DIGITS.findall(other):
        score = min(60.0, fuzz.token_sort_ratio(probe, other))
        return score, score
    compact, other_compact = probe.replace(" ", ""), other.replace(" ", "")
    shared, mine, theirs = _shared_words(probe.split(), other.split())
    if shared and mine and theirs:
        left, right = "".join(mine), "".join(theirs)
        if (
            DamerauLevenshtein.distance(left, right, score_cutoff=2) > 1
            and fuzz.ratio(left, right) < QUALIFIER_SIMILARITY
        ):
            score = _plain_score(probe, other, compact, other_compact)
            return min(score, BRANCH_SCORE), score
    score = _plain_score(probe, other, compact, other_compact)
    extra = "".join(mine or theirs)
    if shared and not (mine and theirs) and extra:
        common = sum(len(w) for w in shared)
        if common >= 6 and len(extra) * 2 <= common:
            score = max(score, QUALIFIED_SCORE)
    return score, score


def _plain_score(probe: str, other: str, compact: str, other_compact: str) -> float:
    edits = DamerauLevenshtein.distance(compact, other_compact, score_cutoff=2)
    if (len(compact) >= 5 and edits <= 1) or (len(compact) >= 9 and edits <= 2):
        return 100.0 - 5 * edits  # one typo in a short name costs more than the ratio says
    return max(fuzz.token_sort_ratio(probe, other), fuzz.ratio(compact, other_compact))


def _shared_words(
    words: Sequence[str], others: Sequence[str]
) -> tuple[list[str], list[str], list[str]]:
    """The words of two names matched one to one (equal, or one typo apart from five
    letters), and what is left of each: ``(shared, words left, others left)``.  Two words
    of one name that the other runs together (``мебель центр``, ``мебельцентр``) count as
    one."""
    words, others = _joined(words, others), _joined(others, words)
    left = list(others)
    shared, mine = [], []
    for word in words:
        match = next((o for o in left if o == word), None)
        if match is None and len(word) >= 5:
            match = next(
                (
                    o
                    for o in left
                    if len(o) >= 5 and DamerauLevenshtein.distance(word, o, score_cutoff=1) <= 1
                ),
                None,
            )
        if match is None:
            mine.append(word)
        else:
            left.remove(match)
            shared.append(word)
    return shared, mine, left


def _joined(words: Sequence[str], others: Sequence[str]) -> list[str]:
    """``words`` with each two neighbours run together when ``others`` has them as one word."""
    joined: list[str] = []
    index = 0
    while index < len(words):
        if index + 1 < len(words) and words[index] + words[index + 1] in others:
            joined.append(words[index] + words[index + 1])
            index += 2
        else:
            joined.append(words[index])
            index += 1
    return joined


# -- keeping the keys ---------------------------------------------------------------------


def index_names(
    connection: Connection,
    parties: Sequence[tuple[int, str, str]],
    *,
    replace: bool = False,
    bulk: bool = False,
) -> None:
    """Write the blocking keys of ``(party_id, name, kind)`` triples and their words.

    ``replace`` drops the parties' old keys first (a rename).  ``bulk`` writes keys with
    the bulk path (COPY on PostgreSQL) and assumes the parties are new.
    """
    from crmkit.services.bulk import insert_rows

    if not parties:
        return
    if replace:
        ids = [p[0] for p in parties]
        for start in range(0, len(ids), 500):
            connection.execute(
                delete(PartyMatchKey).where(PartyMatchKey.party_id.in_(ids[start : start + 500]))
            )
    rows: list[dict[str, Any]] = []
    words: set[str] = set()
    for party_id, name, kind in parties:
        for key in party_name_keys(name, kind):
            rows.append({"key": key, "party_id": party_id})
            if key.startswith("w:"):
                words.add(key[2:])
    add_words(connection, words)
    if bulk:
        rows.sort(key=lambda row: (row["key"], row["party_id"]))
        insert_rows(connection, PartyMatchKey.__table__, rows)
    elif rows:
        connection.execute(PartyMatchKey.__table__.insert(), rows)


def party_name_keys(name: str | None, kind: str | None) -> list[str]:
    """The blocking keys stored for a party of this name and kind (``party_match_key``)."""
    return name_match_keys(name_skeleton(name or "", kind or "organisation"))


def add_words(connection: Connection, words: Iterable[str]) -> None:
    """Add words to the vocabulary, skipping known ones (safe against concurrent writers)."""
    wanted = sorted({w for w in words if w})
    if not wanted:
        return
    if connection.dialect.name == "postgresql" and len(wanted) > 200:
        _copy_words(connection, wanted)
        return
    known: set[str] = set()
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        known.update(
            connection.execute(select(MatchWord.word).where(MatchWord.word.in_(chunk))).scalars()
        )
    new = [w for w in wanted if w not in known]
    if not new:
        return
    if connection.dialect.name == "sqlite":
        _insert_words_sqlite(connection, new)
        return
    variants = [{"variant": v, "word": w} for w in new for v in one_letter_variants(w)]
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(
        dialect.insert(MatchWord).on_conflict_do_nothing(index_elements=["word"]),
        [{"word": w} for w in new],
    )
    connection.execute(
        dialect.insert(MatchWordVariant).on_conflict_do_nothing(index_elements=["variant", "word"]),
        variants,
    )


def _insert_words_sqlite(connection: Connection, words: list[str]) -> None:
    """New words and their variants on SQLite: one ``INSERT ... SELECT FROM json_each(?)``
    each, not an executemany.

    Every statement that writes ``match_word`` fires the FTS5 trigger, and inside a
    savepoint (an import batch runs in one) FTS5 flushes its pending terms to a new segment
    at each statement: row by row, the flushes and the merges they cause grew with the
    index until a 20,000-row batch of a million-row import spent 75% of its time there
    (5,000 words: 1.2-1.5 s by executemany, 0.1 s in one statement).
    """
    connection.exec_driver_sql(
        "INSERT INTO match_word (word) SELECT value FROM json_each(?) WHERE true "
        "ON CONFLICT (word) DO NOTHING",
        (json.dumps(words),),
    )
    variants = sorted([v, w] for w in words for v in one_letter_variants(w))
    connection.exec_driver_sql(
        "INSERT INTO match_word_variant (variant, word) "
        "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
        "FROM json_each(?) WHERE true "
        "ON CONFLICT (variant, word) DO NOTHING",
        (json.dumps(variants),),
    )


def _copy_words(connection: Connection, words: list[str]) -> None:
    """Many words on PostgreSQL (an import batch): COPY them into a temporary table, insert
    the unknown ones with ``ON CONFLICT DO NOTHING RETURNING`` (which tells which were new),
    then their variants the same way.

    Looking the words up first with ``word IN (...)`` was quadratic during an import: the
    vocabulary grows inside the transaction, the planner still thinks it empty and scans it
    once per batch of words (45 s of a 53 s import of 20,000 rows).
    """
    driver = connection.connection.driver_connection
    with driver.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS new_match_word (word text) ON COMMIT DELETE ROWS"
        )
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS new_match_word_variant "
            "(variant text, word text) ON COMMIT DELETE ROWS"
        )
        cursor.execute("TRUNCATE new_match_word, new_match_word_variant")
        with cursor.copy("COPY new_match_word (word) FROM STDIN") as copy:
            for word in words:
                copy.write_row((word,))
        cursor.execute(
            "INSERT INTO match_word (word) SELECT word FROM new_match_word "
            "ON CONFLICT DO NOTHING RETURNING word"
        )
        new = [row[0] for row in cursor.fetchall()]
        if not new:
            return
        with cursor.copy("COPY new_match_word_variant (variant, word) FROM STDIN") as copy:
            for word in new:
                for variant in one_letter_variants(word):
                    copy.write_row((variant, word))
        cursor.execute(
            "INSERT INTO match_word_variant (variant, word) SELECT variant, word "
            "FROM new_match_word_variant ON CONFLICT DO NOTHING"
        )


def forget_names(connection: Connection, party_ids: Iterable[int]) -> None:
    """Drop the blocking keys of parties (merged away): they no longer screen."""
    ids = sorted({int(i) for i in party_ids})
    for start in range(0, len(ids), 500):
        connection.execute(
            delete(PartyMatchKey).where(PartyMatchKey.party_id.in_(ids[start : start + 500]))
        )


@attrs.frozen
class RebuiltKeys:
    """What :func:`rebuild_keys` did: ``parties`` checked, ``changed`` of them had stale
    keys: ``name_keys`` (the ``party.name_key`` column) rewritten, blocking keys ``added``
    and ``removed``."""

    parties: int = 0
    changed: int = 0
    name_keys: int = 0
    added: int = 0
    removed: int = 0

    def __add__(self, other: RebuiltKeys) -> RebuiltKeys:
        pairs = zip(attrs.astuple(self), attrs.astuple(other), strict=True)
        return RebuiltKeys(*(a + b for a, b in pairs))


def rebuild_keys(
    crm: Any,
    *,
    batch_size: int = 1000,
    progress: Callable[[RebuiltKeys], None] | None = None,
) -> RebuiltKeys:
    """Recompute every party's stored name keys with today's folding rules.

    Keys are written when a name is saved; a party saved before a change of the rules
    (legal forms, look-alike letters) keeps keys that screening no longer looks for.  The
    parties are read in id order, ``batch_size`` at a time, each batch in a transaction of
    its own (memory stays bounded; an interrupted run keeps the batches it committed), and
    only the parties whose keys differ are written, so running it again changes nothing.
    A merged-away party keeps no blocking keys.  ``progress`` is called after each batch
    with the totals so far.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    party = Party.__table__
    done = RebuiltKeys()
    last = 0
    while True:
        with crm.system() as work:
            connection = work.session.connection()
            if connection.dialect.name == "sqlite":
                # one writer at a time: take the write lock before reading the names, so a
                # rename cannot slip in between (PostgreSQL locks the rows read below)
                connection.execute(delete(PartyMatchKey).where(PartyMatchKey.party_id == -1))
            rows = connection.execute(
                select(
                    party.c.id, party.c.name, party.c.kind, party.c.name_key, party.c.merged_into_id
                )
                .where(party.c.id > last)
                .order_by(party.c.id)
                .limit(batch_size)
                .with_for_update()
            ).all()
            if not rows:
                return done
            stored: dict[int, set[str]] = defaultdict(set)
            for party_id, key in connection.execute(
                select(PartyMatchKey.party_id, PartyMatchKey.key).where(
                    PartyMatchKey.party_id.between(rows[0].id, rows[-1].id)
                )
            ):
                stored[party_id].add(key)
            batch = _rebuild_batch(connection, rows, stored)
        done += batch
        last = rows[-1].id
        if progress is not None:
            progress(done)


def _rebuild_batch(
    connection: Connection, rows: Sequence[Any], stored: Mapping[int, set[str]]
) -> RebuiltKeys:
    """Write the keys of the parties in ``rows`` that differ from ``stored``."""
    party = Party.__table__
    name_keys: list[dict[str, Any]] = []
    reindex: list[tuple[int, str, str]] = []
    forget: list[int] = []
    changed: set[int] = set()
    added = removed = 0
    for row in rows:
        key = name_key(row.name or "", row.kind or "organisation")
        if key != row.name_key:
            name_keys.append({"party_id": row.id, "folded": key})
            changed.add(row.id)
        wanted = set() if row.merged_into_id else set(party_name_keys(row.name, row.kind))
        had = stored.get(row.id, set())
        if wanted != had:
            added += len(wanted - had)
            removed += len(had - wanted)
            changed.add(row.id)
            if wanted:
                reindex.append((row.id, row.name, row.kind))
            else:
                forget.append(row.id)
    if name_keys:
        connection.execute(
            party.update()
            .where(party.c.id == bindparam("party_id"))
            # keys are derived data: the record itself did not change
            .values(name_key=bindparam("folded"), updated_at=party.c.updated_at),
            name_keys,
        )
    index_names(connection, reindex, replace=True)
    forget_names(connection, forget)
    return RebuiltKeys(len(rows), len(changed), len(name_keys), added, removed)


# -- many names at once (an import) ---------------------------------------------------------

#: Parties taken from each key a one-word name corrects to (its word's postings).
BATCH_POSTINGS_PER_KEY = 50


@attrs.frozen
class Lookalike:
    """A name one typo away from a planned one: an existing party (``party_id``) or an
    earlier row of the same file (``row``), with the name score (0-100)."""

    party_id: int | None
    row: int | None
    name: str
    score: int


class BatchLookalikes:
    """Look-alike names of many names at once (the rows of an import batch).

    The same look-alike as interactive screening's correction path: each word of four
    letters or more is corrected to the known words within one typo (they share a
    one-letter-less variant, :func:`_closest`), the name's whole-name key is asked for with
    each corrected word in place (``n:`` sorted words; a one-word name's ``w:`` word), and the
    parties found are scored with :func:`_name_score`; those from ``threshold`` count.

    Two statements for the whole batch (the variants of all its words, the parties behind
    all corrected keys) and one for the candidates' names.  The batch's own words are
    indexed in memory too, so a row finds a look-alike among the rows before it
    (:meth:`created` registers a row once it is to be created).
    """

    def __init__(self, connection: Connection | None, threshold: int) -> None:
        self.connection = connection
        self.threshold = threshold
        self.skeletons: dict[int, str] = {}
        self.keys: dict[int, list[str]] = {}
        self.best: dict[int, Lookalike] = {}
        self.rows: dict[str, list[int]] = defaultdict(list)  # whole-name key -> created rows
        self.names: dict[int, str] = {}  # created row -> its name as typed
        self.mine: dict[str, list[int]] = defaultdict(list)  # the rows created here
        self.words: dict[str, list[str]] = {}  # the rows' words -> their variants

    def prepare(
        self, names: Mapping[int, str], also: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        """Find the existing look-alikes of ``{row: skeleton}``; ``also``: words not in the
        vocabulary yet that the rows may be one typo from (the :attr:`words` of the batch
        being written)."""
        self.skeletons.update(names)
        also = also or {}
        words = {w for s in names.values() for w in s.split() if len(w) >= 4}
        if not words:
            return
        variants = self.words = {w: also.get(w) or one_letter_variants(w) for w in words}
        by_variant: dict[str, set[str]] = defaultdict(set)
        for word, spellings in variants.items():  # the batch's own words, for later rows
            for variant in spellings:
                by_variant[variant].add(word)
        wanted = list(by_variant)
        for word, spellings in also.items():
            for variant in spellings:
                if variant in by_variant:
                    by_variant[variant].add(word)
        for variant, word in _any_of(
            self.connection,
            "SELECT variant, word FROM match_word_variant WHERE variant",
            wanted,
        ):
            by_variant[variant].add(word)
        closest: dict[str, list[str]] = {}
        distance = DamerauLevenshtein.distance
        for word, spellings in variants.items():
            known = set().union(*(by_variant[v] for v in spellings))
            known.discard(word)
            closest[word] = sorted(k for k in known if distance(word, k, score_cutoff=1) == 1)[
                :ONE_TYPO_WORDS
            ]
        wanted_keys: dict[str, list[int]] = {}
        for row, skeleton in names.items():
            keys = self.keys[row] = _lookalike_keys(skeleton, closest)
            for key in keys:
                if key in wanted_keys:
                    wanted_keys[key].append(row)
                else:
                    wanted_keys[key] = [row]
        found: dict[int, set[int]] = defaultdict(set)
        postings: dict[str, int] = defaultdict(int)
        for key, party_id in _any_of(
            self.connection, "SELECT key, party_id FROM party_match_key WHERE key", wanted_keys
        ):
            postings[key] += 1
            if postings[key] <= BATCH_POSTINGS_PER_KEY:
                for row in wanted_keys[key]:
                    found[row].add(party_id)
        ids = sorted({i for parties in found.values() for i in parties})
        details: dict[int, tuple[str, str]] = {}
        for start in range(0, len(ids), 5000):
            for party_id, name, kind in self.connection.execute(
                select(Party.id, Party.name, Party.kind).where(
                    Party.id.in_(ids[start : start + 5000]), Party.merged_into_id.is_(None)
                )
            ):
                details[party_id] = (name, name_skeleton(name, kind))
        for row, parties in found.items():
            for party_id in sorted(parties):
                if party_id not in details:
                    continue
                name, skeleton = details[party_id]
                self._consider(row, Lookalike(party_id, None, name, 0), skeleton)

    def _consider(self, row: int, candidate: Lookalike, skeleton: str) -> Lookalike | None:
        score = round(_name_score(self.skeletons[row], skeleton))
        if score < self.threshold:
            return None
        candidate = attrs.evolve(candidate, score=score)
        best = self.best.get(row)
        if best is None or score > best.score:
            self.best[row] = candidate
        return candidate

    def of(self, row: int) -> Lookalike | None:
        """The best look-alike of a prepared row: an existing party, else an earlier row
        registered with :meth:`created`."""
        found = self.best.get(row)
        if found is not None:
            return found
        best = None
        for key in self.keys.get(row, ()):
            for other in self.rows.get(key, ()):
                if other == row:
                    continue
                candidate = self._consider(
                    row, Lookalike(None, other, self.names[other], 0), self.skeletons[other]
                )
                if candidate is not None and (best is None or candidate.score > best.score):
                    best = candidate
        return best

    def parties(self) -> set[int]:
        """The existing parties among the prepared rows' look-alikes."""
        return {found.party_id for found in self.best.values() if found.party_id is not None}

    def created(self, row: int, name: str) -> None:
        """A prepared row is to be created: the rows after it may look like it."""
        skeleton = self.skeletons.get(row, "")
        words = skeleton.split()
        if not words:
            return
        key = whole_name_key(words)
        self.rows[key].append(row)
        self.mine[key].append(row)
        self.names[row] = name

    def follow(self, previous: BatchLookalikes) -> None:
        """Also find the rows ``previous`` registered as created (the batch before, written
        while this one was prepared, so not seen by its statements)."""
        for key, rows in previous.mine.items():
            self.rows[key].extend(rows)
            for row in rows:
                self.names[row] = previous.names[row]
                self.skeletons[row] = previous.skeletons[row]


def _lookalike_keys(skeleton: str, closest: Mapping[str, Sequence[str]]) -> list[str]:
    """The whole-name keys of ``skeleton`` with one word spelled as each known word one
    typo away (the ``n:`` sorted words; a one-word name's ``w:`` word)."""
    words = skeleton.split()
    if len(words) == 1:  # one typo in four letters scores under any useful threshold
        near = closest.get(words[0], ()) if len(words[0]) >= 5 else ()
        return [f"w:{similar}"[:120] for similar in near]
    if len(words) == 2:  # most names: the sorted pair without sorting a list
        first, second = words
        keys = [
            f"n:{min(similar, second)} {max(similar, second)}"[:120]
            for similar in closest.get(first, ())
        ]
        keys += [
            f"n:{min(first, similar)} {max(first, similar)}"[:120]
            for similar in closest.get(second, ())
        ]
        return keys
    keys = []
    for index, word in enumerate(words):
        others = words[:index] + words[index + 1 :]
        for similar in closest.get(word, ()):
            keys.append(whole_name_key([*others, similar]))
    return keys


def _any_of(connection: Connection, sql: str, values: Iterable[str]) -> list[Any]:
    """``sql`` (ending in a column) ``= ANY(...)`` of many values in one statement: an array
    (:func:`~crmkit.services.bulk.text_array_literal`) on PostgreSQL,
    ``IN (SELECT value FROM json_each(?))`` on SQLite."""
    wanted = sorted(values)
    if not wanted:
        return []
    if connection.dialect.name == "postgresql":  # one literal the server parses
        return connection.exec_driver_sql(
            f"{sql} = ANY(CAST(%(values)s AS text[]))", {"values": text_array_literal(wanted)}
        ).all()
    if connection.dialect.name == "sqlite":  # the driver's cursor: rows are plain tuples
        cursor = connection.connection.driver_connection.cursor()
        try:
            cursor.execute(f"{sql} IN (SELECT value FROM json_each(?))", (json.dumps(wanted),))
            return cursor.fetchall()
        finally:
            cursor.close()
    found = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        found += connection.execute(
            text(f"{sql} IN :values").bindparams(bindparam("values", expanding=True)),
            {"values": chunk},
        ).all()
    return found
