"""A synthetic shop, written fast: customers, a year of orders, the enrollments those orders
started, the messages the journeys sent, survey answers, delivery reports and referrals.

Rows are generated in Python and written in batches straight through the driver (SQLite
``executemany``, PostgreSQL ``COPY``): the ORM would spend minutes building objects for
millions of rows that need no logic. The schema is the real one, created by the migrations,
and every NOT NULL column is filled because raw inserts skip the models' Python defaults.

The shape follows the shipped journeys (journeys/*.yaml): the segment is decided per order by
the rules of journeys/segments.yaml over the customer's history, each order enrolls into its
segment's journey (plus the transactional order-updates journey for a share of orders), and
the messages are the journey's steps with the step keys the journey compiler gives them.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, Protocol

from sqlalchemy import Engine, text

from aftersale.core.links import referral_code
from aftersale.db.migrate import upgrade
from aftersale.db.session import make_engine

#: The report time the world is built for: twelve months of history end here.
REPORT_END = datetime(2026, 3, 1, tzinfo=UTC)
HISTORY_DAYS = 365
DAY = 86_400
SPAN = HISTORY_DAYS * DAY  # times are whole seconds since the start of the history
_EPOCH = (REPORT_END - timedelta(days=HISTORY_DAYS)).replace(tzinfo=None)
BATCH = 25_000  # rows buffered across tables before a flush: big enough to amortize, small in RAM

SEGMENTS = ("first_time", "repeat", "vip", "at_risk", "discount_hunter")
SURVEY_KINDS: dict[str, str] = {"nps_survey": "nps", "csat_checkin": "csat", "ces_checkin": "ces"}
JOURNEY_OF = {"first_time": "onboarding", "discount_hunter": "onboarding", "repeat": "repeat-nps",
              "vip": "vip-care", "at_risk": "win-back"}
JOURNEYS = ("onboarding", "vip-care", "win-back", "repeat-nps", "order-updates")
HOLDOUT = {"onboarding": 0.10, "vip-care": 0.10, "repeat-nps": 0.10, "win-back": 0.15,
           "order-updates": 0.0}  # as in journeys/*.yaml
ORDER_UPDATES_SHARE = 0.3  # of orders: enough for the funnel, without doubling the enrollments
EUR_RATE = {"EUR": 1.0, "GBP": 1.17, "USD": 0.92, "TRY": 0.022, "PLN": 0.23}
LOCALES = (("en", "GB", "Europe/London", "GBP"), ("de", "DE", "Europe/Berlin", "EUR"),
           ("tr", "TR", "Europe/Istanbul", "TRY"), ("pl", "PL", "Europe/Warsaw", "PLN"),
           ("en", "US", "America/New_York", "USD"))
LOCALE_WEIGHTS = (3, 3, 2, 1, 1)

# Scores as shops see them: most answers are good, a tail is not.
NPS_WEIGHTS = (2, 1, 1, 2, 2, 4, 6, 10, 18, 25, 29)  # 0..10
CSAT_WEIGHTS = (5, 7, 13, 35, 40)  # 1..5
CES_WEIGHTS = (3, 4, 8, 15, 25, 25, 20)  # 1..7
ANSWER_SHARE = 0.25
REPORTED_SHARE = 0.4  # messages the provider reported on (delivery events)


@dataclass(frozen=True)
class Step:
    key: str  # the compiler's step key (index in the journey, dotted inside branches)
    template: str
    channels: tuple[str, ...]
    after_days: float  # after delivery (after shipping for order-updates)
    chance: float = 1.0  # a ``when`` that is sometimes false


PLANS: dict[str, tuple[Step, ...]] = {
    "onboarding": (Step("2", "product_tutorial", ("email", "whatsapp"), 1, 0.6),
                   Step("4", "csat_checkin", ("email", "whatsapp", "sms"), 7),
                   Step("8", "nps_survey", ("email", "sms"), 21)),
    "vip-care": (Step("2", "personal_checkin", ("email", "whatsapp"), 2),
                 Step("4", "nps_survey", ("email", "whatsapp", "sms"), 5)),
    "repeat-nps": (Step("2", "nps_survey", ("email", "sms", "whatsapp"), 21),),
    "win-back": (Step("2", "winback", ("email", "sms"), 3),
                 Step("4", "ces_checkin", ("email", "sms"), 10)),
    "order-updates": (Step("1", "shipping_update", ("whatsapp", "sms", "email"), 0),),
}
# Branch steps, keyed by (journey, what happened): detractors get a follow-up, promoters an invite.
FOLLOW_UPS: dict[tuple[str, str], Step] = {
    ("onboarding", "csat_low"): Step("6.0.1", "detractor_followup", ("email",), 0),
    ("onboarding", "detractor"): Step("10.0.1", "detractor_followup", ("email",), 0),
    ("onboarding", "promoter"): Step("10.1.0", "referral_invite", ("email", "whatsapp", "sms"), 0),
    ("vip-care", "detractor"): Step("6.0.1", "detractor_followup", ("email",), 0),
    ("vip-care", "promoter"): Step("6.1.0", "referral_invite", ("email", "whatsapp", "sms"), 0),
    ("repeat-nps", "promoter"): Step("4.1.0", "referral_invite", ("email", "whatsapp"), 0),
    ("win-back", "ces_ok"): Step("7", "referral_invite", ("email", "whatsapp", "sms"), 10),
}
PROVIDER = {"email": "sendgrid", "sms": "twilio", "whatsapp": "twilio"}

COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("id", "email", "phone", "first_name", "last_name", "locale", "timezone",
                  "country", "consent_email", "consent_sms", "consent_whatsapp", "referral_code",
                  "created_at", "updated_at"),
    "orders": ("id", "customer_id", "number", "placed_at", "total", "currency", "items",
               "discount_codes", "referral_code", "status", "shipped_at", "delivered_at",
               "cancelled_at", "refunded_at"),
    "journey_versions": ("id", "journey", "version", "definition", "created_at"),
    "enrollments": ("id", "journey", "journey_version_id", "customer_id", "order_id",
                    "entry_key", "segment", "holdout", "status", "pc", "waiting_for", "due_at",
                    "enrolled_at", "ended_at", "end_reason"),
    "messages": ("id", "enrollment_id", "step_key", "customer_id", "journey", "template",
                 "channels", "channel", "recipient", "locale", "status", "delivery_status",
                 "provider", "provider_message_id", "attempts", "created_at", "due_at",
                 "sending_at", "sent_at"),
    "survey_responses": ("id", "event_id", "customer_id", "order_id", "message_id", "kind",
                         "score", "responded_at", "source", "updated_at"),
    "delivery_events": ("id", "provider", "provider_event_id", "message_id",
                        "provider_message_id", "kind", "recipient", "occurred_at",
                        "received_at", "raw"),
    "referrals": ("id", "code", "referrer_id", "customer_id", "order_id", "first_order",
                  "created_at"),
}
# Parents before children, so every flushed batch satisfies the foreign keys.
TABLES = tuple(COLUMNS)
# Tables whose ids we assign: PostgreSQL's sequences must be moved past them afterwards.
SERIAL_TABLES = ("journey_versions", "enrollments", "survey_responses", "delivery_events",
                 "referrals")

Row = tuple[Any, ...]
WORLD_MARKER = "bench_world"  # runtime_state key: which world this database holds
WORLD_STATS = "bench_world_stats"  # runtime_state key: its row counts and build time
WORLD_VERSION = 3  # bump when the shape changes, so cached databases are rebuilt


@dataclass(frozen=True)
class WorldStats:
    customers: int
    orders: int
    enrollments: int
    messages: int
    survey_responses: int
    delivery_events: int
    referrals: int
    seconds: float
    segment_customers: dict[str, int] = field(default_factory=dict)  # distinct, per segment


def world_key(customers: int, orders: int, seed: int) -> str:
    return f"{customers}c-{orders}o-s{seed}-v{WORLD_VERSION}"


# Formatting millions of datetimes dominates the build: a day part and a clock part,
# looked up, make a timestamp for the cost of one string concatenation.
_DAYS = [(_EPOCH + timedelta(days=d)).date().isoformat() + " " for d in range(HISTORY_DAYS + 90)]
_CLOCK = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000000" for s in range(DAY)]


def ts(seconds: int) -> str:
    """A time in the text form SQLAlchemy stores on SQLite; PostgreSQL reads it as UTC
    because the loading session runs with TIME ZONE 'UTC'."""
    return _DAYS[seconds // DAY] + _CLOCK[seconds % DAY]


def _below(rng: random.Random, low: int, high: int | None = None) -> int:
    """rng.randrange without its argument checks, which cost more than the draw."""
    if high is None:
        low, high = 0, low
    return low + int(rng.random() * (high - low))


def order_counts(rng: random.Random, customers: int, orders: int) -> list[int]:
    """Orders per customer summing to ``orders``: about 45% buy once, the others twice or
    more, with a long tail of loyal buyers (lognormal propensity)."""
    if orders < customers:
        raise ValueError(f"need at least one order per customer ({orders} < {customers})")
    counts = [1] * customers
    extra = orders - customers
    repeaters = [i for i in range(customers) if rng.random() < 0.55][:extra]
    for i in repeaters:
        counts[i] += 1
    left = extra - len(repeaters)
    if left and repeaters:
        weights = list(accumulate(rng.lognormvariate(0, 0.7) for _ in repeaters))
        for i in rng.choices(repeaters, cum_weights=weights, k=left):
            counts[i] += 1
    elif left:
        counts[0] += left  # only when nobody repeats (tiny worlds)
    return counts


class _Sink(Protocol):
    """Where batches go: one open transaction on the target database."""

    def write(self, table: str, columns: Sequence[str], rows: list[Row]) -> None: ...

    def finish(self) -> None: ...


class _SqliteSink:
    def __init__(self, dbapi: Any) -> None:
        self.dbapi = dbapi
        cursor = dbapi.cursor()
        # A benchmark world is built into a scratch file and rebuilt on failure: durability
        # buys nothing, and a WAL would hold (and then copy) the whole database once more.
        for pragma in ("PRAGMA foreign_keys=OFF", "PRAGMA synchronous=OFF",
                       "PRAGMA journal_mode=OFF", "PRAGMA cache_size=-262144",
                       "PRAGMA temp_store=MEMORY"):
            cursor.execute(pragma)
        self.cursor = cursor

    def write(self, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        marks = ", ".join("?" * len(columns))
        self.cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                                rows)

    def finish(self) -> None:
        self.dbapi.commit()
        self.cursor.execute("PRAGMA foreign_keys=ON")
        self.cursor.execute("PRAGMA journal_mode=WAL")  # what the application runs with


class _PostgresSink:
    def __init__(self, dbapi: Any) -> None:
        self.dbapi = dbapi
        self.cursor = dbapi.cursor()
        self.cursor.execute("SET TIME ZONE 'UTC'")
        # Foreign-key triggers cost a lookup per row; batches are written parents first, so
        # the data is consistent anyway. Needs superuser: without it the checks just run.
        try:
            self.cursor.execute("SET session_replication_role = replica")
        except Exception:  # noqa: BLE001 - not allowed: keep the checks, only slower
            dbapi.rollback()
            self.cursor.execute("SET TIME ZONE 'UTC'")

    def write(self, table: str, columns: Sequence[str], rows: list[Row]) -> None:
        with self.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def finish(self) -> None:
        for table in SERIAL_TABLES:
            self.cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
        self.cursor.execute("SET session_replication_role = origin")
        self.dbapi.commit()


class _Shop:
    """Generates one customer at a time and buffers the rows for the sink."""

    def __init__(self, rng: random.Random, sink: _Sink) -> None:
        self.rng = rng
        self.sink = sink
        self.rows: dict[str, list[Row]] = {table: [] for table in TABLES}
        self.pending = 0
        self.written: Counter[str] = Counter()
        self.segment_customers: Counter[str] = Counter()
        self.order_seq = self.enrollment_seq = self.message_seq = 0
        self.event_seq = self.response_seq = self.referral_seq = 0
        self.version_id = {journey: n for n, journey in enumerate(JOURNEYS, start=1)}
        self.channels_json = {plan: json.dumps(list(plan)) for plan in
                              {s.channels for s in (*FOLLOW_UPS.values(),
                                                    *(s for p in PLANS.values() for s in p))}}
        self.items = [json.dumps([{"sku": f"SKU-{n:03d}", "title": f"Item {n}", "quantity": q,
                                   "category": ("drones", "cameras", "audio", "toys")[n % 4]}])
                      for n in range(40) for q in (1, 2)]
        self.codes = ("[]", '["WELCOME10"]', '["SPRING15"]', '["VIP20"]')

    # -- buffering ---------------------------------------------------------------------
    def add(self, table: str, row: Row) -> None:
        self.rows[table].append(row)
        self.pending += 1

    def flush(self) -> None:
        for table in TABLES:
            rows = self.rows[table]
            if rows:
                self.sink.write(table, COLUMNS[table], rows)
                self.written[table] += len(rows)
                rows.clear()
        self.pending = 0

    def journey_versions(self) -> None:
        created = ts(0)
        for journey, version_id in self.version_id.items():
            self.add("journey_versions", (version_id, journey, "bench", "{}", created))

    # -- one customer ------------------------------------------------------------------
    def customer(self, index: int, n_orders: int) -> None:
        rng = self.rng
        cid = f"c{index:07d}"
        locale, country, zone, currency = rng.choices(LOCALES, LOCALE_WEIGHTS)[0]
        consent = {"email": rng.random() < 0.93, "sms": rng.random() < 0.45,
                   "whatsapp": rng.random() < 0.3}
        address = {"email": f"{cid}@example.com", "sms": f"+4477{index:08d}",
                   "whatsapp": f"+4477{index:08d}"}
        first = _below(rng, 0, SPAN - DAY)
        times = [first, *sorted(_below(rng, first, SPAN) for _ in range(n_orders - 1))]
        self.add("customers", (cid, address["email"], address["sms"], f"First{index}",
                               f"Last{index}", locale, zone, country, int(consent["email"]),
                               int(consent["sms"]), int(consent["whatsapp"]),
                               referral_code(cid), ts(first), ts(first)))
        referrer = None
        if index > 10 and rng.random() < 0.02:  # ~2% of new customers came through a friend
            referrer = f"c{_below(rng, index):07d}"
        basket = rng.lognormvariate(0, 0.6)  # some customers simply buy bigger
        discount_prone = rng.random() < 0.2
        holdout = {j: rng.random() < share for j, share in HOLDOUT.items()}
        segments: set[str] = set()
        valid = discounted = 0
        spent = 0.0
        last_valid: int | None = None
        in_winback = False
        for n, placed in enumerate(times):
            self.order_seq += 1
            oid = f"o{self.order_seq:08d}"
            eur = round(rng.lognormvariate(3.9, 0.7) * basket, 2)
            total = round(eur / EUR_RATE[currency], 2)
            uses_code = rng.random() < (0.7 if discount_prone else 0.15)
            life = self.order_life(placed)
            code = referral_code(referrer) if referrer is not None and n == 0 else None
            self.add("orders", (oid, cid, f"#{self.order_seq}", ts(placed), total, currency,
                                rng.choice(self.items),
                                rng.choice(self.codes[1:]) if uses_code else "[]", code,
                                life["status"], *(ts(life[k]) if life[k] is not None else None
                                                  for k in ("shipped", "delivered", "cancelled",
                                                            "refunded"))))
            if code is not None and referrer is not None:
                self.referral_seq += 1
                self.add("referrals", (self.referral_seq, code, referrer, cid, oid, 1,
                                       ts(placed)))
            # The segment rules (journeys/segments.yaml) over the history as of this order.
            count, share_spent = valid + 1, spent + eur
            share = (discounted + uses_code) / count
            if share_spent >= 1000:
                segment = "vip"
            elif last_valid is not None and placed - last_valid >= 90 * DAY:
                segment = "at_risk"
            elif count >= 2 and share >= 0.5:
                segment = "discount_hunter"
            elif count >= 2:
                segment = "repeat"
            else:
                segment = "first_time"
            journey = JOURNEY_OF[segment]
            if journey == "win-back" and in_winback:
                journey = None  # win-back is once per customer
            if journey is not None:
                in_winback = in_winback or journey == "win-back"
                segments.add(segment)
                entry = "customer" if journey == "win-back" else f"order:{oid}"
                self.enroll(journey, cid, oid, entry, segment, holdout[journey], placed, life,
                            consent, address, locale)
            if rng.random() < ORDER_UPDATES_SHARE:
                segments.add(segment)
                self.enroll("order-updates", cid, oid, f"order:{oid}", segment, False, placed,
                            life, consent, address, locale)
            if life["status"] not in ("cancelled", "refunded"):
                valid, spent, discounted, last_valid = (valid + 1, spent + eur,
                                                        discounted + uses_code, placed)
        self.segment_customers.update(segments)
        if self.pending >= BATCH:
            self.flush()

    def order_life(self, placed: int) -> dict[str, Any]:
        """When the order shipped, arrived, or was cancelled/refunded (~1.5% each); a stamp
        after the report time has not happened yet."""
        rng = self.rng
        life: dict[str, Any] = dict.fromkeys(("shipped", "delivered", "cancelled", "refunded"))
        fate = rng.random()
        if fate < 0.015:
            cancelled = placed + _below(rng, 600, DAY)
            if cancelled < SPAN:
                life.update(status="cancelled", cancelled=cancelled)
                return life
            life["status"] = "placed"
            return life
        shipped = placed + _below(rng, DAY // 2, 3 * DAY)
        delivered = shipped + _below(rng, DAY, 5 * DAY)
        refunded = delivered + _below(rng, DAY, 20 * DAY) if fate < 0.03 else SPAN
        life["status"] = "placed"
        for stamp, status, at in (("shipped", "shipped", shipped),
                                  ("delivered", "delivered", delivered),
                                  ("refunded", "refunded", refunded)):
            if at >= SPAN:
                break
            life[stamp], life["status"] = at, status
        return life

    def enroll(self, journey: str, cid: str, oid: str, entry: str, segment: str, holdout: bool,
               placed: int, life: dict[str, Any], consent: dict[str, bool],
               address: dict[str, str], locale: str) -> None:
        self.enrollment_seq += 1
        eid = self.enrollment_seq
        start = placed + _below(self.rng, 1, 120)
        if holdout:  # recorded for the lift comparison, never sent a step
            self.add("enrollments", (eid, journey, self.version_id[journey], cid, oid, entry,
                                     segment, 1, "completed", 0, None, None, ts(start),
                                     ts(start), "holdout"))
            return
        if life["cancelled"] is not None:
            self.add("enrollments", (eid, journey, self.version_id[journey], cid, oid, entry,
                                     segment, 0, "exited", 0, None, None, ts(start),
                                     ts(life["cancelled"]), "exit event order.cancelled"))
            return
        base = life["shipped"] if journey == "order-updates" else life["delivered"]
        limit = life["refunded"] if life["refunded"] is not None else SPAN
        last = self.send_steps(journey, eid, cid, oid, base, limit, consent, address, locale)
        if life["refunded"] is not None:
            status, ended, reason = "exited", life["refunded"], "exit event order.refunded"
        elif base is not None and base + 40 * DAY < SPAN:
            status, ended, reason = "completed", last or base, "completed"
        else:
            status, ended, reason = "active", None, None
        waiting = "order.delivered" if base is None and status == "active" else None
        due = ts(last + DAY) if status == "active" and last is not None else None
        self.add("enrollments", (eid, journey, self.version_id[journey], cid, oid, entry, segment,
                                 0, status, 0 if last is None else 3, waiting, due, ts(start),
                                 None if ended is None else ts(ended), reason))

    def send_steps(self, journey: str, eid: int, cid: str, oid: str, base: int | None,
                   limit: int, consent: dict[str, bool], address: dict[str, str],
                   locale: str) -> int | None:
        """The journey's messages that were due before ``limit``; the time of the last one."""
        if base is None:
            return None
        rng = self.rng
        last: int | None = None
        # (step, follows the previous message rather than the delivery)
        queue = [(step, False) for step in PLANS[journey]]
        while queue:
            step, follows = queue.pop(0)
            due = (last if follows and last is not None else base) \
                + int(step.after_days * DAY) + _below(rng, 0, 3600)
            if due >= limit:
                break
            if step.chance < 1.0 and rng.random() >= step.chance:
                continue
            channel = next((c for c in step.channels if consent[c]), None)
            if channel is None:
                continue  # no consent on any of the step's channels: nothing sent
            last = due
            answer = self.message(journey, step, eid, cid, oid, due, limit, channel,
                                  address[channel], locale)
            kind = SURVEY_KINDS.get(step.template)
            outcome = None
            if kind == "nps" and answer is not None:
                outcome = "detractor" if answer <= 6 else "promoter" if answer >= 9 else None
            elif kind == "csat" and answer is not None and answer <= 2:
                outcome = "csat_low"
            elif kind == "ces" and (answer is None or answer >= 5):
                outcome = "ces_ok"
            follow = FOLLOW_UPS.get((journey, outcome or ""))
            if follow is not None:
                # A branch replaces the rest: an unhappy onboarding CSAT ends before the NPS.
                queue = [(follow, True)]
        return last

    def message(self, journey: str, step: Step, eid: int, cid: str, oid: str, due: int,
                limit: int, channel: str, recipient: str, locale: str) -> int | None:
        """One message, its delivery reports and maybe its survey answer (the score)."""
        rng = self.rng
        self.message_seq += 1
        mid = f"m{self.message_seq:09d}"
        pid = f"p{self.message_seq:09d}"
        provider = PROVIDER[channel]
        failed = rng.random() < 0.015
        sent = None if failed else due + _below(rng, 1, 120)
        status = None
        if sent is not None and rng.random() < REPORTED_SHARE:
            status = self.reports(mid, pid, provider, channel, recipient, sent)
        self.add("messages", (mid, eid, step.key, cid, journey, step.template,
                              self.channels_json[step.channels], channel, recipient, locale,
                              "failed" if failed else "sent", status, provider, pid, 1, ts(due),
                              ts(due), ts(due), None if sent is None else ts(sent)))
        kind = SURVEY_KINDS.get(step.template)
        if kind is None or sent is None or rng.random() >= ANSWER_SHARE:
            return None
        answered = sent + _below(rng, 600, 3 * DAY)
        if answered >= limit:
            return None
        weights = {"nps": NPS_WEIGHTS, "csat": CSAT_WEIGHTS, "ces": CES_WEIGHTS}[kind]
        score = rng.choices(range(len(weights)), weights)[0] + (0 if kind == "nps" else 1)
        self.response_seq += 1
        self.add("survey_responses", (self.response_seq, f"sv{self.response_seq:09d}", cid, oid,
                                      mid, kind, score, ts(answered), channel, ts(answered)))
        return score

    def reports(self, mid: str, pid: str, provider: str, channel: str, recipient: str,
                sent: int) -> str:
        """Provider reports for one message; returns the furthest status, as send_outcomes.py keeps."""
        rng = self.rng
        if rng.random() < 0.03:
            kinds = ["bounced" if channel == "email" else "failed"]
        else:
            kinds = ["delivered"]
            if channel != "sms" and rng.random() < 0.45:
                kinds.append("opened" if channel == "email" else "read")
                if rng.random() < 0.3:
                    kinds.append("clicked")
        at = sent
        for kind in kinds:
            at += _below(rng, 5, 3600)
            self.event_seq += 1
            self.add("delivery_events", (self.event_seq, provider, f"ev{self.event_seq:09d}", mid,
                                         pid, kind, recipient, ts(at), ts(at + 2), "{}"))
        return kinds[-1]


def _sink_for(engine: Engine, dbapi: Any) -> _Sink:
    if engine.dialect.name == "sqlite":
        return _SqliteSink(dbapi)
    if engine.dialect.name == "postgresql":
        return _PostgresSink(dbapi)
    raise ValueError(f"unsupported database {engine.dialect.name}")


def build_world(url: str, customers: int, orders: int, seed: int,
                progress: Callable[[str], None] | None = None) -> WorldStats:
    """Create the schema at ``url`` (which must hold no customers yet) and fill it."""
    began = time.perf_counter()
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            if connection.execute(text("SELECT count(*) FROM customers")).scalar():
                raise ValueError(f"{engine.url.render_as_string()} already holds customers")
        rng = random.Random(seed)
        counts = order_counts(rng, customers, orders)
        raw = engine.raw_connection()
        try:
            shop = _Shop(rng, _sink_for(engine, raw.driver_connection))
            shop.journey_versions()
            step = max(customers // 10, 1)
            for index, n_orders in enumerate(counts):
                shop.customer(index, n_orders)
                if progress is not None and (index + 1) % step == 0:
                    progress(f"{index + 1:,} customers, {shop.order_seq:,} orders")
            shop.flush()
            written = shop.written
            stats = WorldStats(
                customers=written["customers"], orders=written["orders"],
                enrollments=written["enrollments"], messages=written["messages"],
                survey_responses=written["survey_responses"],
                delivery_events=written["delivery_events"], referrals=written["referrals"],
                seconds=time.perf_counter() - began,
                segment_customers=dict(shop.segment_customers))
            # Written last, in the same transaction: a half-built world has no marker.
            mark = ("INSERT INTO runtime_state (key, value) VALUES (?, ?)"
                    if engine.dialect.name == "sqlite" else
                    "INSERT INTO runtime_state (key, value) VALUES (%s, %s)")
            cursor = raw.driver_connection.cursor()
            cursor.execute(mark, (WORLD_MARKER, world_key(customers, orders, seed)))
            cursor.execute(mark, (WORLD_STATS, json.dumps(asdict(stats))))
            shop.sink.finish()
        finally:
            raw.close()
        if engine.dialect.name == "postgresql":
            # Autovacuum would analyze the fresh tables minutes later; plans need it now.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE"))
    finally:
        engine.dispose()
    return replace(stats, seconds=time.perf_counter() - began)


def stored_world(url: str) -> tuple[str, WorldStats] | None:
    """(world key, stats of its build) a database holds, or None (empty, unfinished, no schema)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            found = dict(connection.execute(
                text("SELECT key, value FROM runtime_state WHERE key IN (:marker, :stats)"),
                {"marker": WORLD_MARKER, "stats": WORLD_STATS}).tuples().all())
    except Exception:  # noqa: BLE001 - no schema yet: no world
        return None
    finally:
        engine.dispose()
    if WORLD_MARKER not in found or WORLD_STATS not in found:
        return None
    return found[WORLD_MARKER], WorldStats(**json.loads(found[WORLD_STATS]))
