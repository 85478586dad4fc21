"""The seeded demo retail store (Luma-style): the same code builds the first-start database and every test database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cai import store
from cai.errors import CaiError

TUTORIAL_EMAIL = "hbirkenshawa@businessweek.com"
DEMO_DATASET = "Luma retail events (demo)"
DEMO_START = dt.datetime(2026, 1, 5)
DEMO_DAYS = 300
DEFAULT_PROFILES = 20_000
DEFAULT_SEED = 7
EMAIL_CAMPAIGN_EVERY_DAYS = 28

EVENT_TYPES = [
    "web.webpagedetails.pageViews",
    "commerce.productViews",
    "commerce.productListAdds",
    "commerce.productListRemovals",
    "commerce.checkouts",
    "commerce.purchases",
    "directMarketing.emailSent",
    "directMarketing.emailOpened",
    "directMarketing.emailClicked",
    "search",
]
(PAGE_VIEW, PRODUCT_VIEW, LIST_ADD, LIST_REMOVE, CHECKOUT, PURCHASE,
 EMAIL_SENT, EMAIL_OPENED, EMAIL_CLICKED, SEARCH) = range(len(EVENT_TYPES))

CHANNELS = ["web", "mobile", "email"]
TIERS = ["bronze", "silver", "gold", "platinum"]
TIER_ACTIVITY = np.array([1.0, 1.0, 1.3, 1.7, 2.3])  # index 0 is "not a member"
TIER_PURCHASE = np.array([0.55, 0.6, 0.68, 0.76, 0.85])
PAGES = ["home", "women", "men", "gear", "sale", "new arrivals", "training", "collections"]
PRODUCT_NAMES = [
    "Radiant Tee", "Breathe-Easy Tank", "Argus All-Weather Tank", "Hero Hoodie", "Stellar Solar Jacket",
    "Chaz Kangeroo Hoodie", "Proteus Fitness Jackshirt", "Mach Street Sweatshirt", "Juno Jacket", "Olivia 1/4 Zip",
    "Ingrid Running Jacket", "Riona Full Zip Jacket", "Daphne Full-Zip Hoodie", "Selene Yoga Hoodie", "Circe Hooded Ice",
    "Fusion Backpack", "Push It Messenger Bag", "Strive Shoulder Pack", "Wayfarer Messenger Bag", "Overnight Duffle",
    "Sprite Yoga Strap", "Sprite Foam Roller", "Harmony Lumaflex Band", "Quest Lumaflex Band", "Zing Jump Rope",
    "Didi Sport Watch", "Luma Analog Watch", "Bolo Sport Watch", "Aim Analog Watch", "Endurance Watch",
    "Gwyn Endurance Tee", "Layla Tee", "Elisa EverCool Tee", "Desiree Fitness Tee", "Tiberius Gym Tank",
    "Atlas Fitness Tank", "Sparta Gym Tank", "Erikssen CoolTech Tee", "Balboa Persistence Tee", "Strike Endurance Tee",
]
PRODUCT_PRICES = np.round(np.linspace(14.0, 120.0, len(PRODUCT_NAMES)), 2)
FEMALE_FIRST_NAMES = [
    "Ada", "Cara", "Elena", "Greta", "Ines", "Keiko", "Maya", "Olga", "Rosa", "Tara", "Vera", "Xenia", "Zoe",
    "Amara", "Chloe", "Emma", "Grace", "Hana", "Julia", "Lena",
]
MALE_FIRST_NAMES = [
    "Ben", "Dmitri", "Farid", "Hugo", "Jonas", "Liam", "Noah", "Pablo", "Umar", "Wes", "Yusuf", "Bruno", "Diego",
    "Felix", "Ivan", "Kofi", "Tomas", "Oscar", "Rafael", "Samuel",
]
NEUTRAL_FIRST_NAMES = ["Quinn", "Sami", "Robin", "Alex"]
# The tutorial's customer (lab 5.3 looks up hbirkenshawa@businessweek.com): a loyal gold member, recently active.
TUTORIAL_PERSON = {"first_name": "Harriet", "last_name": "Birkenshaw", "gender": "female", "birth_year": 1988,
                   "city": "London", "country": "GB", "loyalty_tier": "gold", "loyalty_points": 2_450,
                   "signup_date": DEMO_START - dt.timedelta(days=400)}
TUTORIAL_TIER = 3  # "gold": index into [not a member, *TIERS]
LAST_NAMES = [
    "Abbott", "Bergstrom", "Castillo", "Delacroix", "Eriksen", "Fontaine", "Gallagher", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quintana", "Rossi", "Sato",
    "Takahashi", "Ulrich", "Valdez", "Whitfield", "Xu", "Yamamoto", "Zielinski", "Brennan", "Costa", "Duarte",
]
DOMAINS = ["example.com", "mail.test", "inbox.example", "post.example", "webmail.test"]
CITIES = [
    ("New York", "US"), ("Chicago", "US"), ("Austin", "US"), ("Seattle", "US"), ("Toronto", "CA"),
    ("London", "GB"), ("Manchester", "GB"), ("Paris", "FR"), ("Berlin", "DE"), ("Amsterdam", "NL"),
    ("Madrid", "ES"), ("Milan", "IT"), ("Sydney", "AU"), ("Tokyo", "JP"),
]


@dataclass(frozen=True)
class DemoSummary:
    profiles: int
    events: int
    first_event: dt.datetime
    last_event: dt.datetime


def _day_weights() -> np.ndarray:
    """Shopping seasonality: busier weekends, a summer bump and the autumn run-up to the holidays."""
    days = np.arange(DEMO_DAYS)
    weekday = (DEMO_START.weekday() + days) % 7
    weekly = np.where(weekday >= 5, 1.25, 1.0)
    summer = 1 + 0.2 * np.exp(-(((days - 170) / 25.0) ** 2))
    autumn = 1 + 0.5 * np.clip((days - 240) / 60.0, 0, 1)
    return weekly * summer * autumn


def _sample_days(rng, start_day, end_day, cumulative) -> np.ndarray:
    """One day per row, within [start_day, end_day), drawn with the seasonal weights (inverse CDF)."""
    low = cumulative[start_day]
    high = cumulative[end_day]
    target = low + rng.random(len(start_day)) * (high - low)
    return np.clip(np.searchsorted(cumulative, target, side="right") - 1, start_day, end_day - 1)


def _profiles_frame(rng, n: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    profile_id = np.arange(1, n + 1, dtype=np.int64)
    name_draw = rng.integers(0, len(FEMALE_FIRST_NAMES), n)
    last = np.array(LAST_NAMES)[rng.integers(0, len(LAST_NAMES), n)]
    tier_index = rng.choice(5, n, p=[0.4, 0.27, 0.18, 0.1, 0.05])  # 0: not a loyalty member
    city_index = rng.integers(0, len(CITIES), n)
    signup_day = rng.integers(-500, DEMO_DAYS - 30, n)
    engagement = rng.beta(2, 3, n)
    gender = rng.choice(np.array(["female", "male", "not_specified"]), n, p=[0.52, 0.44, 0.04])
    # First names agree with the gender attribute.
    first = np.select(
        [gender == "female", gender == "male"],
        [np.array(FEMALE_FIRST_NAMES)[name_draw % len(FEMALE_FIRST_NAMES)],
         np.array(MALE_FIRST_NAMES)[name_draw % len(MALE_FIRST_NAMES)]],
        np.array(NEUTRAL_FIRST_NAMES)[name_draw % len(NEUTRAL_FIRST_NAMES)])
    profiles = pd.DataFrame({
        "profile_id": profile_id,
        "first_name": first,
        "last_name": last,
        "gender": gender,
        "birth_year": rng.integers(1950, 2006, n).astype(np.int32),
        "city": np.array([c for c, _ in CITIES])[city_index],
        "country": np.array([c for _, c in CITIES])[city_index],
        "loyalty_tier": np.array([None] + TIERS, dtype=object)[tier_index],
        "loyalty_points": np.where(tier_index > 0, (rng.gamma(2, 400, n) * tier_index).astype(np.int32), 0),
        "signup_date": pd.to_datetime(DEMO_START) + pd.to_timedelta(signup_day, unit="D"),
    })
    profiles.loc[0, list(TUTORIAL_PERSON)] = list(TUTORIAL_PERSON.values())
    tier_index[0], signup_day[0] = TUTORIAL_TIER, (TUTORIAL_PERSON["signup_date"] - DEMO_START).days
    latent = {"tier": tier_index, "signup_day": signup_day, "engagement": engagement}
    return profiles, latent


def _identities_frame(rng, profiles: pd.DataFrame, tier_index: np.ndarray) -> pd.DataFrame:
    n = len(profiles)
    ids = profiles["profile_id"].to_numpy()
    suffix = pd.Series(ids).map(lambda i: np.base_repr(int(i), 36).lower())
    email = (
        profiles["first_name"].str[0].str.lower() + profiles["last_name"].str.lower() + suffix
        + "@" + pd.Series(np.array(DOMAINS)[rng.integers(0, len(DOMAINS), n)])
    )
    email.iloc[0] = TUTORIAL_EMAIL
    ecid = (
        pd.Series(rng.integers(10**17, 10**18, n)).astype(str)
        + pd.Series(rng.integers(10**17, 10**18, n)).astype(str)
    )
    phone_ok = rng.random(n) < 0.8
    phone = "+1555" + pd.Series(ids + 1_000_000).astype(str).str[-7:]
    frames = [
        pd.DataFrame({"namespace": "Email", "id_value": email, "profile_id": ids, "is_primary": True}),
        pd.DataFrame({"namespace": "ECID", "id_value": ecid, "profile_id": ids, "is_primary": False}),
        pd.DataFrame({"namespace": "CRMID", "id_value": "CRM" + pd.Series(ids).astype(str).str.zfill(8),
                      "profile_id": ids, "is_primary": False}),
        pd.DataFrame({"namespace": "Phone", "id_value": phone[phone_ok].to_numpy(), "profile_id": ids[phone_ok],
                      "is_primary": False}),
        pd.DataFrame({"namespace": "LoyaltyID", "id_value": "LUMA-" + pd.Series(ids[tier_index > 0]).astype(str),
                      "profile_id": ids[tier_index > 0], "is_primary": False}),
    ]
    return pd.concat(frames, ignore_index=True)


def _events_frame(rng, latent: dict[str, np.ndarray]) -> pd.DataFrame:
    n = len(latent["tier"])
    tier = latent["tier"]
    engagement = latent["engagement"]
    weights = _day_weights()
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])

    # Each customer is active from sign-up until a churn date; many churn inside the demo period.
    active_start = np.clip(latent["signup_day"], 0, DEMO_DAYS - 1)
    lifetime = rng.exponential(260, n).astype(np.int64) + 20
    active_end = np.clip(latent["signup_day"] + lifetime, active_start + 1, DEMO_DAYS)
    rate = rng.gamma(0.7, 0.025, n) * TIER_ACTIVITY[tier] * (0.6 + engagement)
    intent = rng.beta(2, 5, n) * (0.7 + 0.6 * engagement)
    prefers_mobile = rng.random(n) < 0.4
    # The tutorial's customer is a loyal, recently active shopper.
    rate[0], active_end[0], intent[0] = 0.12, DEMO_DAYS, 0.45

    # Browsing sessions.
    sessions = rng.poisson(rate * (active_end - active_start) * weights.mean())
    s_profile = np.repeat(np.arange(n), sessions)
    s_day = _sample_days(rng, active_start[s_profile], active_end[s_profile], cumulative)
    s_time = s_day * 86_400 + rng.integers(7 * 3600, 23 * 3600, len(s_profile))

    # Email campaigns: subscribers are mailed; opens and clicks follow engagement, clicks bring a session.
    campaign_days = np.arange(3, DEMO_DAYS, EMAIL_CAMPAIGN_EVERY_DAYS)
    subscribed = rng.random(n) < 0.7
    e_profile = np.repeat(np.arange(n), len(campaign_days))
    e_day = np.tile(campaign_days, n)
    mailed = subscribed[e_profile] & (latent["signup_day"][e_profile] <= e_day)
    e_profile, e_day = e_profile[mailed], e_day[mailed]
    e_time = e_day * 86_400 + 9 * 3600 + rng.integers(0, 3600, len(e_profile))
    still_active = e_day < active_end[e_profile]
    opened = rng.random(len(e_profile)) < np.where(still_active, 0.15 + 0.5 * engagement[e_profile], 0.04)
    clicked = opened & (rng.random(len(e_profile)) < 0.3)
    visit = clicked & (rng.random(len(e_profile)) < 0.7)
    open_time = e_time + rng.integers(600, 86_400, len(e_profile))
    click_time = open_time + rng.integers(10, 900, len(e_profile))

    s_profile = np.concatenate([s_profile, e_profile[visit]])
    s_time = np.concatenate([s_time, click_time[visit] + 30])
    from_email = np.concatenate([np.zeros(len(s_time) - visit.sum(), bool), np.ones(visit.sum(), bool)])
    keep = s_time < DEMO_DAYS * 86_400
    s_profile, s_time, from_email = s_profile[keep], s_time[keep], from_email[keep]
    n_sessions = len(s_profile)
    channel = np.where(from_email, 2, np.where(prefers_mobile[s_profile], 1, 0))

    parts: list[dict[str, np.ndarray]] = []

    def add(session_index, event_type, offset_s, value=None, sku=None, quantity=None):
        count = len(session_index)
        parts.append({
            "p": s_profile[session_index],
            "t": s_time[session_index] + offset_s,
            "type": np.full(count, event_type, np.int8),
            "value": np.full(count, np.nan) if value is None else value,
            "sku": np.full(count, -1, np.int16) if sku is None else sku.astype(np.int16),
            "qty": np.zeros(count, np.int16) if quantity is None else quantity.astype(np.int16),
            "channel": channel[session_index].astype(np.int8),
        })

    index = np.arange(n_sessions)
    views = 1 + rng.poisson(1.2, n_sessions)
    view_idx = np.repeat(index, views)
    add(view_idx, PAGE_VIEW, rng.integers(0, 600, len(view_idx)))
    product_views = rng.poisson(1.0 + 2 * intent[s_profile])
    pv_idx = np.repeat(index, product_views)
    pv_sku = rng.integers(0, len(PRODUCT_NAMES), len(pv_idx))
    add(pv_idx, PRODUCT_VIEW, rng.integers(60, 900, len(pv_idx)), sku=pv_sku, value=PRODUCT_PRICES[pv_sku])
    searched = index[rng.random(n_sessions) < 0.25]
    add(searched, SEARCH, rng.integers(0, 300, len(searched)))

    boost = np.where(from_email, 1.4, 1.0)
    added = rng.random(n_sessions) < np.clip(intent[s_profile] * 1.3 * boost, 0, 0.95)
    add_idx = index[added]
    add_sku = rng.integers(0, len(PRODUCT_NAMES), len(add_idx))
    add_qty = 1 + rng.poisson(0.4, len(add_idx))
    add(add_idx, LIST_ADD, 900 + rng.integers(0, 300, len(add_idx)), value=PRODUCT_PRICES[add_sku] * add_qty,
        sku=add_sku, quantity=add_qty)
    removed = add_idx[rng.random(len(add_idx)) < 0.15]
    add(removed, LIST_REMOVE, 1300 + rng.integers(0, 120, len(removed)))
    checked_out = add_idx[rng.random(len(add_idx)) < 0.7]
    add(checked_out, CHECKOUT, 1500 + rng.integers(0, 120, len(checked_out)))
    bought = checked_out[rng.random(len(checked_out)) < TIER_PURCHASE[tier[s_profile[checked_out]]]]
    items = 1 + rng.poisson(0.8, len(bought))
    first_sku = rng.integers(0, len(PRODUCT_NAMES), len(bought))
    order_total = np.round(PRODUCT_PRICES[first_sku] * items * rng.uniform(0.8, 1.2, len(bought)), 2)
    add(bought, PURCHASE, 1700 + rng.integers(0, 120, len(bought)), value=order_total, sku=first_sku, quantity=items)

    email_sessionless = {"p": e_profile, "channel": np.full(len(e_profile), 2, np.int8)}
    for mask, event_type, when in ((np.ones(len(e_profile), bool), EMAIL_SENT, e_time),
                                   (opened, EMAIL_OPENED, open_time), (clicked, EMAIL_CLICKED, click_time)):
        count = int(mask.sum())
        parts.append({
            "p": email_sessionless["p"][mask], "t": when[mask], "type": np.full(count, event_type, np.int8),
            "value": np.full(count, np.nan), "sku": np.full(count, -1, np.int16),
            "qty": np.zeros(count, np.int16), "channel": email_sessionless["channel"][mask],
        })

    columns = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    in_range = columns["t"] < DEMO_DAYS * 86_400
    columns = {key: values[in_range] for key, values in columns.items()}
    order = np.lexsort((columns["t"], columns["p"]))
    columns = {key: values[order] for key, values in columns.items()}
    start_us = int(pd.Timestamp(DEMO_START).value // 1000)
    return pd.DataFrame({
        "profile_id": columns["p"] + 1,
        "ts": pd.to_datetime(start_us + columns["t"] * 1_000_000, unit="us"),
        "type_code": columns["type"],
        "value": columns["value"],
        "sku_code": columns["sku"],
        "quantity": columns["qty"],
        "channel_code": columns["channel"],
        "page_code": rng.integers(0, len(PAGES), len(columns["p"])).astype(np.int8),
        "campaign": ((columns["t"] // 86_400) // EMAIL_CAMPAIGN_EVERY_DAYS).astype(np.int16),
    })


def _lookup(name: str, values: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"code": np.arange(len(values)), name: values})


def build_demo(db_path: Path, profiles: int = DEFAULT_PROFILES, seed: int = DEFAULT_SEED) -> DemoSummary:
    """Writes the demo store into ``db_path`` in one transaction; refuses a database that already has data."""
    rng = np.random.default_rng(seed)
    profile_frame, latent = _profiles_frame(rng, profiles)
    identity_frame = _identities_frame(rng, profile_frame, latent["tier"])
    event_frame = _events_frame(rng, latent)
    event_types = _lookup("event_type", EVENT_TYPES)
    skus = _lookup("product_name", PRODUCT_NAMES).assign(sku=[f"LUMA-{i:04d}" for i in range(len(PRODUCT_NAMES))])
    channels = _lookup("channel", CHANNELS)
    pages = _lookup("page_name", PAGES)

    def load(con):
        if con.execute("SELECT count(*) FROM profiles").fetchall()[0][0]:
            raise CaiError("This database already has profiles; the demo is only built into an empty database.")
        dataset_id = store.next_id(con, "datasets", "dataset_id")
        batch_id = store.next_id(con, "batches", "batch_id")
        con.execute(
            "INSERT INTO datasets (dataset_id, name, kind, description) VALUES (?, ?, 'events', ?)",
            [dataset_id, DEMO_DATASET, f"Seeded demo of a retail store: {profiles:,} profiles, seed {seed}."],
        )
        for name, frame in (("profile_frame", profile_frame), ("identity_frame", identity_frame),
                            ("event_frame", event_frame), ("event_types", event_types), ("skus", skus),
                            ("channels", channels), ("pages", pages)):
            con.register(name, frame)
        con.execute("INSERT INTO profiles SELECT *, NULL, current_timestamp FROM profile_frame")
        # The demo's attributes hold from the customer's sign-up, before any of their events.
        con.execute(
            "INSERT INTO profile_attribute_versions SELECT profile_id, attribute, CAST(signup_date AS TIMESTAMP), "
            "value, $batch FROM (UNPIVOT (SELECT profile_id, signup_date, loyalty_tier, "
            "CAST(loyalty_points AS VARCHAR) AS loyalty_points, CAST(birth_year AS VARCHAR) AS birth_year, gender, "
            "country, city FROM profile_frame) ON loyalty_tier, loyalty_points, birth_year, gender, country, city "
            "INTO NAME attribute VALUE value)",
            {"batch": batch_id})
        con.execute("INSERT INTO identities SELECT * FROM identity_frame")
        con.execute(
            """
            INSERT INTO events
            SELECT NULL, e.profile_id, e.ts, t.event_type,
                   CASE WHEN e.type_code IN (1, 2, 5) THEN e.value END,
                   CASE WHEN e.type_code = 5 THEN 'ORD-' || e.profile_id || '-' || epoch(e.ts)::BIGINT END,
                   s.sku, s.product_name, nullif(e.quantity, 0),
                   CASE WHEN e.type_code IN (2, 5) THEN e.value END,
                   c.channel,
                   CASE WHEN e.type_code = 0 THEN p.page_name END,
                   CASE WHEN c.channel = 'email' THEN 'EM-' || lpad(e.campaign::VARCHAR, 3, '0') END,
                   $batch, NULL
            FROM event_frame e
            JOIN event_types t ON t.code = e.type_code
            JOIN channels c ON c.code = e.channel_code
            JOIN pages p ON p.code = e.page_code
            LEFT JOIN skus s ON s.code = e.sku_code
            ORDER BY e.profile_id, e.ts
            """,
            {"batch": batch_id},
        )
        con.execute(
            """
            INSERT INTO batches (batch_id, dataset_id, file_name, status, rows_total, rows_accepted,
                                 profiles_created, started_at, finished_at)
            VALUES (?, ?, ?, 'success', ?, ?, ?, current_timestamp, current_timestamp)
            """,
            [batch_id, dataset_id, f"demo(profiles={profiles}, seed={seed})", len(event_frame), len(event_frame),
             profiles],
        )

    store.write(db_path, load)
    return DemoSummary(
        profiles=profiles,
        events=len(event_frame),
        first_event=event_frame["ts"].min().to_pydatetime(),
        last_event=event_frame["ts"].max().to_pydatetime(),
    )
