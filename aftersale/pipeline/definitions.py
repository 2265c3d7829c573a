"""The definition set: every journey, the segments and the content, checked together.

``check_definitions`` is what ``aftersale validate`` prints. ``activate`` is what the flows use:
a valid set on disk is recorded in the database and used; an invalid one is refused, its
problems reported, and the last valid set recorded in the database keeps running, so a typo
pushed mid-journey never stops customers' journeys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from sqlalchemy import select
from sqlalchemy.orm import Session

from aftersale.content import ContentLibrary
from aftersale.content.render import compile_subject, locale_candidates
from aftersale.core.clock import Clock
from aftersale.core.delivery_clock import StallDefaults
from aftersale.core.errors import DefinitionError, Problem
from aftersale.core.journeys.loader import compile_journey, journey_from_source
from aftersale.core.journeys.model import Journey, Send
from aftersale.core.segment_rules import SegmentSet, compile_segments
from aftersale.core.yaml_lines import Located, load_located
from aftersale.db.models import DefinitionSet, JourneyVersion
from aftersale.db.upsert import insert

SEGMENTS_FILE = "segments.yaml"
log = logging.getLogger(__name__)


@dataclass
class Definitions:
    journeys: dict[str, Journey]
    segments: SegmentSet
    content: ContentLibrary
    sources: dict[str, Any] = field(default_factory=dict, repr=False)
    digest: str = ""
    # The shop's own country (AFTERSALE_SHOP_COUNTRY, set by the runtime): a parcel to
    # elsewhere is international (``shipment.is_international``). None: all are domestic.
    shop_country: str | None = None
    # The settings' stall thresholds (business days), for journeys without stalled_after.
    stalled_after: StallDefaults | None = None

    def triggered_by(self, event_type: str) -> list[Journey]:
        """The journeys this event starts (any of their triggers: ``trigger:`` may list
        several)."""
        return [j for j in self.journeys.values() if event_type in j.triggers]


def check_definitions(journeys_dir: Path, content_dir: Path,
                      default_locale: str = "en") -> tuple[Definitions | None, list[Problem]]:
    """Load and cross-check everything; returns the set only when there is no problem."""
    problems: list[Problem] = []
    content, content_problems = ContentLibrary.check(content_dir, default_locale)
    problems += content_problems

    segments: SegmentSet | None = None
    segments_path = journeys_dir / SEGMENTS_FILE
    segments_doc: Located | None = None
    if not segments_path.exists():
        problems.append(Problem(str(segments_path), 1, "segments file is missing",
                                "create it with a 'segments:' list"))
    else:
        segments_doc, found = load_located(segments_path)
        problems += found
        if segments_doc is not None and not found:
            segments, found = compile_segments(segments_doc)
            problems += found

    journeys: dict[str, Journey] = {}
    sources: dict[str, Any] = {}
    files = sorted(p for p in journeys_dir.glob("*.y*ml") if p.name != SEGMENTS_FILE)
    if not files:
        problems.append(Problem(str(journeys_dir), 1, "no journey files found",
                                "add journeys/<name>.yaml"))
    for path in files:
        doc, found = load_located(path)
        problems += found
        if doc is None or found:
            continue
        journey, found = compile_journey(doc)
        problems += found
        if journey is None:
            continue
        if journey.name in journeys:
            problems.append(doc.problem(("journey",), f"journey '{journey.name}' is also "
                                        f"defined in {journeys[journey.name].path}",
                                        "journey names must be unique"))
            continue
        problems += _cross_check(journey, doc, segments, content)
        journeys[journey.name] = journey
        sources[journey.name] = doc.data

    if problems or segments is None or content is None:
        return None, problems
    definitions = Definitions(journeys, segments, content, sources)
    definitions.digest = _digest(sources, segments_doc.data if segments_doc else None,
                                 _snapshot(content_dir))
    return definitions, []


def _cross_check(journey: Journey, doc: Located, segments: SegmentSet | None,
                 content: ContentLibrary | None) -> list[Problem]:
    problems: list[Problem] = []
    if segments is not None:
        known = segments.names()
        for i, name in enumerate(journey.segments):
            if name not in known:
                problems.append(doc.problem(("segments", i), f"unknown segment '{name}'",
                                            f"segments.yaml defines {', '.join(known)}"))
    if content is not None:
        for step, loc in _send_steps(journey, doc):
            problems += _check_content(doc, content, step.template, step.channels,
                                       (*loc, "send"), (*loc, "channels"))
            if step.experiment is None:
                continue
            for i, variant in enumerate(step.experiment.variants):
                vloc = (*loc, "variants", i)
                problems += _check_subject(doc, content, variant.subject, (*vloc, "subject"))
                if variant.template is None and variant.channels is None:
                    continue  # the step's own template and channels, checked above
                problems += _check_content(
                    doc, content, variant.template or step.template,
                    variant.channels or step.channels,
                    (*vloc, "template") if variant.template else (*loc, "send"),
                    (*vloc, "channels") if variant.channels else (*loc, "channels"))
    # A variant on the step's unknown template would say so again at the same line.
    return list(dict.fromkeys(problems))


def _check_content(doc: Located, content: ContentLibrary, template: str,
                   channels: tuple[str, ...], template_loc: tuple[Any, ...],
                   channels_loc: tuple[Any, ...]) -> list[Problem]:
    """The template exists and has content for each channel it is sent on."""
    if template not in content.templates():
        return [doc.problem(template_loc, f"unknown template '{template}'",
                            f"create content/{template}/en.yaml")]
    return [doc.problem((*channels_loc, i), f"template '{template}' has no {channel} content",
                        f"add '{channel}:' to content/{template}/en.yaml or drop the channel")
            for i, channel in enumerate(channels) if not content.has(template, channel)]


def _check_subject(doc: Located, content: ContentLibrary, subject: Mapping[str, str] | None,
                   loc: tuple[Any, ...]) -> list[Problem]:
    """A variant's subject per locale names locales the content is written in (``pl_PL`` is
    fine for content in ``pl``: that is where its customers' messages come from)."""
    known = content.locales()
    problems = [doc.problem((*loc, locale), f"no content is written in locale '{locale}'",
                            f"the content has {', '.join(sorted(known))}")
                for locale in (subject or {})
                if locale != "*" and not known.intersection(locale_candidates(locale))]
    # Compiled now as at send time: a subject that cannot render would otherwise only show at
    # send time, where its messages are put off hour after hour with the text already queued.
    for locale, text in (subject or {}).items():
        at = loc if locale == "*" else (*loc, locale)
        try:
            _, issues = compile_subject(text)
        except TemplateSyntaxError as exc:
            problems.append(doc.problem(at, f"the subject cannot be read: {exc.message}",
                                        "check its {{ ... }} and {% ... %} pairs"))
            continue
        problems.extend(doc.problem(at, f"in the subject: {issue.message}", issue.hint)
                        for issue in issues)
    return problems


def _send_steps(journey: Journey, doc: Located) -> list[tuple[Send, tuple[Any, ...]]]:
    """Map each compiled send back to its YAML location through its key ("3", "7.0.1"): the
    parts alternate between a step's index and a branch case's or a split path's index."""
    found = []
    for step in journey.program:
        if isinstance(step, Send):
            loc: tuple[Any, ...] = ("steps",)
            parts = step.key.split(".")
            for depth, part in enumerate(parts):
                if depth % 2 == 0:
                    loc = (*loc, int(part))
                    continue
                outer = doc.data
                for key in loc:
                    outer = outer[key]
                if "split" in outer:
                    loc = (*loc, "split", int(part), "steps")
                else:
                    case = outer["branch"][int(part)]
                    loc = (*loc, "branch", int(part), "else" if "else" in case else "then")
            found.append((step, loc))
    return found


def _snapshot(content_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(content_dir)): p.read_text(encoding="utf-8")
            for p in sorted(content_dir.rglob("*")) if p.is_file()}


def _digest(journeys: dict[str, Any], segments: Any, content: dict[str, str]) -> str:
    blob = json.dumps([journeys, segments, content], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def activate(session: Session, journeys_dir: Path, content_dir: Path, clock: Clock,
             default_locale: str = "en") -> tuple[Definitions, list[Problem]]:
    """The set to run now: the files if valid (recorded), else the last valid recorded set."""
    definitions, problems = check_definitions(journeys_dir, content_dir, default_locale)
    if definitions is not None:
        _record(session, definitions, journeys_dir, content_dir, clock)
        return definitions, []
    for problem in problems:
        log.error("refusing invalid definitions: %s", problem)
    last = session.scalars(select(DefinitionSet).order_by(DefinitionSet.id.desc()).limit(1)).first()
    if last is None:
        raise DefinitionError(problems)
    log.warning("running the last valid definition set recorded at %s", last.created_at)
    return _restore(last, default_locale), problems


def recorded(session: Session, digest: str, journeys_dir: Path, content_dir: Path,
             default_locale: str = "en") -> Definitions:
    """The recorded set with this digest, for a process that must run exactly what another
    one activated: from the files while they still hold it, else as it was recorded. Writes
    nothing, so several such processes never race to record a set."""
    definitions, _ = check_definitions(journeys_dir, content_dir, default_locale)
    if definitions is not None and definitions.digest == digest:
        return definitions
    stored = session.scalars(select(DefinitionSet).where(DefinitionSet.digest == digest)).one()
    return _restore(stored, default_locale)


def _record(session: Session, definitions: Definitions, journeys_dir: Path, content_dir: Path,
            clock: Clock) -> None:
    """Keep this set and its journey versions. Flow runs that start together (a webhook
    triggers process-events and dispatch-messages at once) record the same set at the same
    moment: ON CONFLICT DO NOTHING lets both through instead of failing one of them."""
    exists = session.scalar(select(DefinitionSet.id).where(DefinitionSet.digest == definitions.digest))
    if exists is None:
        segments_doc, _ = load_located(journeys_dir / SEGMENTS_FILE)
        session.execute(insert(session, DefinitionSet).values(
            digest=definitions.digest, created_at=clock.now(), journeys=definitions.sources,
            segments={"source": segments_doc.data if segments_doc else {}},
            content=_snapshot(content_dir)).on_conflict_do_nothing(index_elements=["digest"]))
    for journey in definitions.journeys.values():
        ensure_version(session, journey, clock)
    session.flush()


def ensure_version(session: Session, journey: Journey, clock: Clock) -> int:
    """The id of this journey version's row, creating it the first time it is seen (by
    whichever process gets there first)."""
    found = select(JourneyVersion.id).where(JourneyVersion.journey == journey.name,
                                            JourneyVersion.version == journey.version)
    row_id = session.scalar(found)
    if row_id is None:
        session.execute(insert(session, JourneyVersion).values(
            journey=journey.name, version=journey.version, definition=journey.source,
            created_at=clock.now()).on_conflict_do_nothing(index_elements=["journey", "version"]))
        row_id = session.scalar(found)
        assert row_id is not None  # inserted here, or by the process that won the race
    return row_id


def _restore(stored: DefinitionSet, default_locale: str) -> Definitions:
    journeys = {name: journey_from_source(src, f"<stored set {stored.id}>")
                for name, src in stored.journeys.items()}
    segments, problems = compile_segments(Located("<stored segments>", stored.segments["source"]))
    if segments is None:
        raise DefinitionError(problems)
    # Content is materialized into a private directory so the same loader serves both paths.
    folder = Path(tempfile.mkdtemp(prefix="aftersale-content-"))
    for relative, text in stored.content.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    content = ContentLibrary.load(folder, default_locale)
    return Definitions(journeys, segments, content, stored.journeys, stored.digest)


#: Compiled journeys by (name, version). A version is a content hash, so an entry can never
#: go stale and is shared by every session and database in the process.
_COMPILED: dict[tuple[str, str], Journey] = {}


class VersionCache:
    """Journeys by version row id, for enrollments that started on an older version."""

    def __init__(self, session: Session):
        self._session = session
        self._cache: dict[int, Journey] = {}

    def get(self, version_id: int) -> Journey:
        if version_id not in self._cache:
            row = self._session.get(JourneyVersion, version_id)
            if row is None:
                raise LookupError(f"journey version {version_id} is missing")
            key = (row.journey, row.version)
            if key not in _COMPILED:
                _COMPILED[key] = journey_from_source(row.definition, f"<{row.journey}@{row.version}>")
            self._cache[version_id] = _COMPILED[key]
        return self._cache[version_id]
