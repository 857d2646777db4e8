"""The whole-base duplicate report: groups of parties that are probably one client.

Runs as the job ``clientbase.duplicate_report`` (or synchronously: ``crmkit duplicates
report``, :func:`run_report`).  It reads the same keys screening uses:

* parties sharing a phone, an email or a website (exact keys) are duplicates outright;
* parties sharing a name blocking key (the sorted words, the words run together, or a
  not-too-common word) or words one typo apart (``match_word_variant``) become pairs that
  rapidfuzz scores; pairs at or above ``screening.threshold`` are linked;
* linked parties are grouped (union-find), best groups first.

An admin reviews the groups on ``/admin/duplicates`` and merges them from there
(:func:`shown_groups`: a member the reader may not see is counted, never named).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, text

from crmkit.clock import utcnow
from crmkit.identity import name_skeleton
from crmkit.model import ContactPoint, DuplicateReport, Party
from crmkit.services.screening import _name_score

JOB_NAME = "clientbase.duplicate_report"
#: A key shared by more parties than this is too common to say anything (a word like "Строй").
MAX_SHARED = 30
#: Groups kept in a report.
MAX_GROUPS = 5000


class _Groups:
    """Union-find over party ids, remembering the best score and the reasons of each link."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.score: dict[int, int] = defaultdict(int)
        self.reasons: dict[int, set[str]] = defaultdict(set)

    def find(self, item: int) -> int:
        root = self.parent.setdefault(item, item)
        while root != self.parent[root]:
            root = self.parent[root]
        while item != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def link(self, a: int, b: int, score: int, reason: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.score[ra] = max(self.score[ra], self.score.pop(rb, 0))
            self.reasons[ra] |= self.reasons.pop(rb, set())
        self.score[ra] = max(self.score[ra], score)
        self.reasons[ra].add(reason)

    def groups(self) -> list[dict[str, Any]]:
        members: dict[int, list[int]] = defaultdict(list)
        for item in self.parent:
            members[self.find(item)].append(item)
        found = [
            {
                "party_ids": sorted(ids),
                "score": self.score[root],
                "reasons": sorted(self.reasons[root]),
            }
            for root, ids in members.items()
            if len(ids) > 1
        ]
        found.sort(key=lambda g: (-g["score"], -len(g["party_ids"]), g["party_ids"][0]))
        return found[:MAX_GROUPS]


def find_groups(connection: Any, threshold: int) -> tuple[int, list[dict[str, Any]]]:
    """``(parties scanned, groups)`` of likely duplicates in the whole base."""
    live = select(Party.id).where(Party.merged_into_id.is_(None))
    scanned = int(connection.scalar(select(func.count()).select_from(live.subquery())) or 0)
    groups = _Groups()
    # 1. exact contact keys
    shared = (
        select(ContactPoint.kind, ContactPoint.key)
        .join(Party, Party.id == ContactPoint.party_id)
        .where(Party.merged_into_id.is_(None), ContactPoint.kind.in_(("phone", "email", "website")))
        .group_by(ContactPoint.kind, ContactPoint.key)
        .having(func.count(func.distinct(ContactPoint.party_id)).between(2, MAX_SHARED))
        .subquery()
    )
    rows = connection.execute(
        select(ContactPoint.kind, ContactPoint.key, ContactPoint.party_id)
        .join(shared, (shared.c.kind == ContactPoint.kind) & (shared.c.key == ContactPoint.key))
        .join(Party, Party.id == ContactPoint.party_id)
        .where(Party.merged_into_id.is_(None))
        .order_by(ContactPoint.kind, ContactPoint.key)
    )
    by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for kind, key, party_id in rows:
        if not key or (kind == "phone" and sum(c.isdigit() for c in key) < 6):
            continue  # an empty key (`http://`, `<>`) is nothing shared
        by_key[(kind, key)].append(party_id)
    for (kind, _), ids in by_key.items():
        for other in ids[1:]:
            groups.link(ids[0], other, 100, kind)
    # 2. names: shared blocking keys, and words one typo apart
    pairs: set[tuple[int, int]] = set()
    key_rows = connection.execute(
        text(
            "SELECT key, party_id FROM party_match_key WHERE key IN ("
            "SELECT key FROM party_match_key GROUP BY key "
            f"HAVING count(*) BETWEEN 2 AND {MAX_SHARED}) ORDER BY key"
        )
    )
    by_name_key: dict[str, list[int]] = defaultdict(list)
    for key, party_id in key_rows:
        by_name_key[key].append(party_id)
    _add_pairs(pairs, by_name_key.values())
    typo_rows = connection.execute(
        text(
            "SELECT v.variant, k.party_id FROM match_word_variant v "
            "JOIN party_match_key k ON k.key = 'w:' || v.word "
            "WHERE v.variant IN (SELECT variant FROM match_word_variant GROUP BY variant "
            f"HAVING count(*) BETWEEN 2 AND {MAX_SHARED})"
        )
    )
    by_variant: dict[str, list[int]] = defaultdict(list)
    for variant, party_id in typo_rows:
        by_variant[variant].append(party_id)
    _add_pairs(pairs, (ids for ids in by_variant.values() if len(ids) <= MAX_SHARED))
    names = _names(connection, {i for pair in pairs for i in pair})
    for a, b in pairs:
        if a in names and b in names:
            score = _name_score(names[a], names[b])
            if score >= threshold:
                groups.link(a, b, round(score), "name")
    return scanned, groups.groups()


def _add_pairs(pairs: set[tuple[int, int]], blocks: Iterable[list[int]]) -> None:
    for ids in blocks:
        unique = sorted(set(ids))
        for i, a in enumerate(unique):
            for b in unique[i + 1 :]:
                pairs.add((a, b))


def _names(connection: Any, ids: set[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 1000):
        chunk = ordered[start : start + 1000]
        for party_id, name, kind in connection.execute(
            select(Party.id, Party.name, Party.kind).where(
                Party.id.in_(chunk), Party.merged_into_id.is_(None)
            )
        ):
            found[party_id] = name_skeleton(name, kind)
    return found


def run_report(crm: Any, report_id: int | None = None, requested_by_id: int | None = None) -> int:
    """Build a duplicate report (the job's function); returns the report's id.

    Given ``report_id`` it fills that queued report; otherwise it makes a new one.  A
    failure is recorded on the report (``status = failed``) and raised again.
    """
    with crm.system() as work:
        report = work.session.get(DuplicateReport, report_id) if report_id else None
        if report is None:
            report = DuplicateReport(requested_by_id=requested_by_id, groups=[])
            work.session.add(report)
        report.status = "running"
        work.flush()
        report_id = report.id
    try:
        with crm.system() as work:
            threshold = int(crm.config["screening.threshold"])
            scanned, groups = find_groups(work.session.connection(), threshold)
            report = work.session.get(DuplicateReport, report_id)
            report.scanned, report.groups = scanned, groups
            report.status, report.finished_at = "done", utcnow()
    except Exception as exc:
        with crm.system() as work:
            report = work.session.get(DuplicateReport, report_id)
            report.status, report.error, report.finished_at = "failed", str(exc), utcnow()
        raise
    return int(report_id)


def shown_groups(work: Any, report: DuplicateReport, limit: int = 200) -> list[dict[str, Any]]:
    """The report's first ``limit`` groups as the actor may see them.

    The report covers the whole base; a group lists as ``members`` the live parties the
    actor may read (their scope, as screening asks it) and counts the live others as
    ``hidden`` (a client they may not see: never its id or name).  A group with no member
    the actor may read, or fewer than two live ones (merged since), is left out."""
    groups = (report.groups or [])[:limit]
    ids = sorted({i for group in groups for i in group["party_ids"]})
    readable = work.parties.find_many(ids)
    live: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        live.update(
            work.session.scalars(
                select(Party.id).where(Party.id.in_(chunk), Party.merged_into_id.is_(None))
            )
        )
    shown = []
    for group in groups:
        members = [readable[i] for i in group["party_ids"] if i in readable]
        alive = sum(1 for i in group["party_ids"] if i in live)
        if members and alive > 1:
            shown.append({**group, "members": members, "hidden": alive - len(members)})
    return shown


def queue_report(work: Any) -> DuplicateReport:
    """Ask the background workers for a new report (an admin's "run" button)."""
    work.access.require("party", "delete")
    report = DuplicateReport(requested_by_id=work.actor.user_id, groups=[])
    work.session.add(report)
    work.flush()
    work.outbox.add("job", {"job": JOB_NAME, "payload": {"report_id": report.id}})
    return report
