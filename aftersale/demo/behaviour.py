"""How simulated customers react to the messages journeys send them.

Pure: every draw comes from the `random.Random` passed in, so the demo is reproducible.
Holdout customers receive nothing and therefore never react; everything here is about the
treated ones, which is what makes treated vs holdout differ in the demo's metrics.

Survey scales (all "higher is better", as the metrics read them):
- NPS 0-10 (9-10 promoter, 0-6 detractor);
- CSAT 1-5 (4-5 satisfied);
- CES 1-7 where 7 = "very easy" (low effort). Some CES surveys ask the other way round; ours
  does not, so a happy customer answers high on every kind.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from aftersale.core.survey_scales import SURVEY_SCALES
from aftersale.demo.shop import Persona

# Extra chance of a purchase within 3-30 days that one opened message of this kind prompts,
# for an average persona (scaled by reorder propensity and satisfaction). Matched on a
# substring of the template name, so "winback_30d" and "winback" behave alike.
# Sized so the demo's holdout comparison shows an effect a 10% holdout can detect.
PURCHASE_LIFT: tuple[tuple[str, float], ...] = (
    ("winback", 0.22),
    ("personal_checkin", 0.14),
    # The onboarding experiment's variant: the same guides and a 10% code for the next order,
    # valid 30 days; it must beat the plain tutorial clearly enough for the demo's experiment
    # (goal: repeat purchase within 30 days) to reach a decision within its months.
    ("tutorial_offer", 0.40),
    ("tutorial", 0.16),
    ("referral", 0.06),
    ("followup", 0.05),
    # surveys before the generic "checkin", so "csat_checkin" counts as a survey
    ("nps", 0.02),
    ("csat", 0.02),
    ("ces", 0.02),
    ("checkin", 0.09),
    ("shipping", 0.005),
    ("delivered", 0.005),
)
DEFAULT_LIFT = 0.02

# What the customer went through with the order a message is about: delivered on time, a
# delivery problem (late, delayed, a failed attempt, lost), or a problem the shop spoke about
# first (a delivery-care message reached them before this one). Sized so the demo's delivery
# section shows it: NPS about 35 points lower after a problem left alone, about 20 when
# handled (the delivery-care journey reaches most problems, so the demo's on-time vs problem
# difference is mostly the handled one, and must stand out of ~80 answers); fewer purchases,
# prompted and unprompted.
ON_TIME, PROBLEM, HANDLED = "on_time", "problem", "handled"
EXPERIENCES = (ON_TIME, PROBLEM, HANDLED)
MOOD_DROP = {ON_TIME: 0.0, PROBLEM: 0.12, HANDLED: 0.07}  # off satisfaction (0..1)
PURCHASE_FACTOR = {ON_TIME: 1.0, PROBLEM: 0.5, HANDLED: 0.8}  # on a message's purchase chance
STOP_BUYING = {ON_TIME: 0.0, PROBLEM: 0.45, HANDLED: 0.2}  # gives up on the shop after it


def experience_of(problem_at: datetime | None, cared_at: datetime | None, at: datetime) -> str:
    """An order's delivery experience as it stands at `at`: its problem (when it went wrong)
    and the first delivery-care message about it (when the shop spoke)."""
    if problem_at is None or problem_at > at:
        return ON_TIME
    return HANDLED if cared_at is not None and cared_at <= at else PROBLEM


@dataclass(frozen=True)
class Reaction:
    opened: bool
    clicked: bool
    survey_score: int | None  # on the survey kind's scale (SURVEY_SCALES), None = no answer
    comment: str | None  # in the persona's language; only with an answer
    reply_delay: timedelta  # from delivery to the open / answer / click
    buys_again_in: timedelta | None  # a purchase this message prompted; None = none
    unsubscribed: bool = False  # replied STOP / clicked unsubscribe


def react(
    persona: Persona, template: str, channel: str, survey_kind: str | None, rng: random.Random,
    experience: str = ON_TIME,
) -> Reaction:
    """One persona's reaction to one delivered message, after the delivery `experience` of the
    order it is about (one of EXPERIENCES)."""
    if survey_kind is not None and survey_kind not in SURVEY_SCALES:
        raise ValueError(f"unknown survey kind {survey_kind!r}; expected one of {sorted(SURVEY_SCALES)}")
    if experience not in EXPERIENCES:
        raise ValueError(f"unknown delivery experience {experience!r}; expected one of "
                         f"{', '.join(EXPERIENCES)}")
    opened = rng.random() < open_probability(persona, channel)
    score = None
    if opened and survey_kind is not None and rng.random() < answer_probability(persona):
        score = survey_score(persona, survey_kind, rng, experience)
    # a one-click survey answer is a click; otherwise a click follows interest
    clicked = score is not None or (opened and rng.random() < _click_probability(persona, template))
    comment = _comment(persona, survey_kind, score, rng) if score is not None else None
    buys = None
    if opened and rng.random() < purchase_probability(persona, template, experience):
        buys = _days(rng, 3, 30)
    unsubscribed = opened and rng.random() < 0.004 + 0.02 * (1 - persona.satisfaction)
    return Reaction(
        opened=opened,
        clicked=clicked,
        survey_score=score,
        comment=comment,
        reply_delay=_reply_delay(channel, rng),
        buys_again_in=buys,
        unsubscribed=unsubscribed,
    )


def open_probability(persona: Persona, channel: str) -> float:
    """Email opens ~40-60% for responsive people; a text message is nearly always seen."""
    if channel in ("sms", "whatsapp"):
        return 0.85 + 0.1 * persona.responsiveness
    return 0.25 + 0.45 * persona.responsiveness


def answer_probability(persona: Persona) -> float:
    """Chance to answer a survey that was opened."""
    return 0.15 + 0.6 * persona.responsiveness


def purchase_probability(persona: Persona, template: str, experience: str = ON_TIME) -> float:
    """Chance that an opened message prompts an extra purchase (a few percentage points)."""
    lift = next((v for key, v in PURCHASE_LIFT if key in template), DEFAULT_LIFT)
    # keen re-buyers act on nudges; unhappy customers mostly do not
    return (lift * (0.8 + 0.8 * persona.reorder_propensity) * (0.5 + 0.5 * persona.satisfaction)
            * PURCHASE_FACTOR[experience])


def keeps_buying(persona: Persona, experience: str, rng: random.Random) -> bool:
    """Whether a customer still places the orders they meant to after a delivery experience
    (drawn once per order that went wrong); keen re-buyers forgive a little more often."""
    return rng.random() >= STOP_BUYING[experience] * (1.2 - 0.4 * persona.reorder_propensity)


def survey_score(persona: Persona, kind: str, rng: random.Random,
                 experience: str = ON_TIME) -> int:
    """A score on the kind's scale around the persona's satisfaction (less what the delivery
    `experience` took off it), with noise."""
    low, high = SURVEY_SCALES[kind]
    mood = min(1.0, max(0.0, rng.gauss(persona.satisfaction - MOOD_DROP[experience], 0.1)))
    # people rate generously: a so-so experience is a 7, not a 5
    return min(high, max(low, round(low + mood**0.7 * (high - low))))


def _click_probability(persona: Persona, template: str) -> float:
    # a tracking link is the one thing nearly everyone wants
    base = 0.45 if "shipping" in template else 0.1
    return base + 0.35 * persona.responsiveness


def _days(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(minutes=round(rng.uniform(low, high) * 24 * 60))


def _reply_delay(channel: str, rng: random.Random) -> timedelta:
    """Texts are read within minutes, emails within hours; long tail, capped at 3 days."""
    median_minutes = 15 if channel in ("sms", "whatsapp") else 180
    minutes = rng.lognormvariate(math.log(median_minutes), 1.0)
    return timedelta(minutes=round(min(max(minutes, 1.0), 3 * 24 * 60)))


_COMMENTS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "negative": (
            "The parcel arrived late and the box was damaged.",
            "Stopped working after a week.",
            "Support never answered my email.",
            "Too expensive for what it is.",
            "Wrong colour was sent.",
        ),
        "neutral": (
            "Fine, but delivery took a bit long.",
            "Does the job.",
            "Good product, the manual could be clearer.",
            "OK overall.",
        ),
        "positive": (
            "Arrived quickly and works perfectly.",
            "Great quality, I'll order again.",
            "Lovely packaging, thank you!",
            "Setup took five minutes, really easy.",
            "Exactly as described.",
        ),
    },
    "tr": {
        "negative": (
            "Kargo çok geç geldi, kutu hasarlıydı.",
            "Bir hafta sonra bozuldu.",
            "Müşteri hizmetleri hiç dönüş yapmadı.",
            "Fiyatına göre kalitesiz.",
            "Yanlış renk gönderildi.",
        ),
        "neutral": (
            "İdare eder, kargo biraz geç geldi.",
            "Fena değil.",
            "Ürün güzel ama kullanım kılavuzu yetersiz.",
            "Genel olarak iyi.",
        ),
        "positive": (
            "Çok hızlı geldi, teşekkürler!",
            "Ürün harika, tekrar sipariş vereceğim.",
            "Paketleme çok özenliydi.",
            "Kurulumu çok kolaydı.",
            "Tam açıklandığı gibi, çok memnunum.",
        ),
    },
    "pl": {
        "negative": (
            "Paczka przyszła spóźniona i uszkodzona.",
            "Przestał działać po tygodniu.",
            "Obsługa klienta nie odpowiedziała na mojego maila.",
            "Za drogo jak na taką jakość.",
            "Przysłano zły kolor.",
        ),
        "neutral": (
            "W porządku, ale dostawa trwała dość długo.",
            "Spełnia swoje zadanie.",
            "Produkt dobry, instrukcja mogłaby być jaśniejsza.",
            "Ogólnie OK.",
        ),
        "positive": (
            "Przesyłka dotarła błyskawicznie, dziękuję!",
            "Świetna jakość, na pewno zamówię ponownie.",
            "Bardzo staranne opakowanie.",
            "Konfiguracja zajęła pięć minut.",
            "Dokładnie tak, jak w opisie.",
        ),
    },
}


def sentiment(kind: str, score: int) -> str:
    """negative / neutral / positive by where the score sits on its scale
    (for NPS: detractor / passive / promoter)."""
    low, high = SURVEY_SCALES[kind]
    position = (score - low) / (high - low)
    if position <= 0.6:
        return "negative"
    return "neutral" if position <= 0.8 else "positive"


def _comment(persona: Persona, kind: str | None, score: int, rng: random.Random) -> str | None:
    """Unhappy people explain themselves more often than happy ones."""
    if kind is None:
        return None
    mood = sentiment(kind, score)
    if rng.random() >= (0.55 if mood == "negative" else 0.3):
        return None
    pool = _COMMENTS.get(persona.language, _COMMENTS["en"])[mood]
    return rng.choice(pool)
