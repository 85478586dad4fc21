"""A Customer AI run: leak-free training on past snapshots, calibration and evaluation on the latest complete one,
then scoring, influential factors and an atomic swap of the instance's results."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from cai import activation
from cai import audit, evaluation, factors, features, identity, ingest, models, store
from cai.errors import CaiError, NotFound
from cai.instances import ERROR, SUCCESS, TRAINING, Definition, get_instance

log = logging.getLogger(__name__)

SNAPSHOT_STEP_DAYS = 14
MAX_TRAINING_SNAPSHOTS = 8
MAX_PROFILES_PER_SNAPSHOT = 60_000
# Fitting's cost grows with its rows and its ranking did not: at a million profiles (140,485 rows over eight
# snapshots, 15,822 goal-reachers) the held-out AUC was 0.767 on every row and 0.769-0.770 on 60,000 of them (every
# goal-reacher kept), for 44% of the fitting time.
MAX_TRAINING_ROWS = 60_000
# The fewest moves of the goal's rate between past windows from which a run states how far the next window may
# land from its expectation: the largest of one or two moves would promise a range far too narrow.
MIN_RATE_MOVES = 3
# A year back on the same weekdays: where last year's windows are, to see how the goal's rate moved from the window
# that calibrates a run to the window the run is for.
YEAR_DAYS = 364
# How many standard errors last year's move must exceed to be carried forward: carrying noise costs as much as
# missing a move. Over 14 generated shops and windows (bench/seasons.py), 2 carried noise into a shop without
# seasons, 3 left real turns of the season behind, and 2.5 did neither.
SEASON_Z = 2.5
# The shortest lookback (the definition's own when it is shorter) within which last year's customers count: the
# first weeks of a log hold only the customers who happened to act in them, and their moves are the log's start.
MIN_SEASON_LOOKBACK_DAYS = 90
MIN_HISTORY_FLOOR_DAYS = 30
SEED = 20_260_101
MAX_CATEGORIES = 30
# The code after a feature's learned categories: values outside the most common ones at training, and values first
# seen after it, share one "other" category instead of passing for a missing value.
OTHER_CATEGORY = "(other)"

# Small, strongly regularised trees: behaviour data is noisy, and in backtests on Online Retail and the demo they
# ranked better than larger ones (mean AUC 0.741 against 0.730 on the eight 2011 cutoffs). 75 trees at a rate of
# 0.2 rank as well as 150 at 0.1 (Online Retail's eight cutoffs: AUC 0.734 both, AP 0.583 and 0.584; the demo at
# 100,000 profiles: AUC 0.766 both) and halve the cost of fitting, scoring and every reason's effects. The number of
# trees is chosen on the latest training snapshot (see ``_fit``): random rows would belong to customers whose other
# snapshots are in training, and such a validation never stops.
MODEL_PARAMS = {
    "max_iter": 75, "learning_rate": 0.2, "max_leaf_nodes": 8, "min_samples_leaf": 200, "l2_regularization": 5.0,
    "early_stopping": True, "n_iter_no_change": 10,
}

# The temporary table of a training's sampled events (see ``DuckDBExecutor.sampled``), made for samples of at most
# this share: a copy costs one read of the events, and every later read of it the sampled share of one. At a
# million profiles (a 6% sample) the copy saved 0.7 s; at 100,000 (a 72% sample) it cost 1 s more than it saved.
SAMPLED_EVENTS = "cai_training_events"
MAX_COPIED_SHARE = 0.25

# Early stopping fits on this share of the training customers (the number of trees it finds is then fitted on
# every row): on the full share it cost most of a second fit, and its choice ranked no better (see the README).
TREE_CHOICE_SHARE = 0.5

Progress = Callable[[float, str], None]


@dataclass
class RunResult:
    run_id: int
    instance: str
    status: str
    as_of: str
    error: str | None = None
    profiles_scored: int = 0
    buckets: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    duration_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Model:
    """Everything needed to score: the fitted trees, the calibration, the encodings and the evaluation."""

    classifier: HistGradientBoostingClassifier
    calibration: tuple[float, float]
    feature_names: list[str]
    categorical: np.ndarray
    categories: dict[str, list[str]]
    evaluation: dict
    training: dict
    sklearn_version: str = sklearn.__version__

    @cached_property
    def trees(self) -> factors.Trees:
        return factors.Trees(self.classifier)

    def logit(self, matrix: np.ndarray) -> np.ndarray:
        return self.trees.logit(matrix)

    def probability(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrated(self.logit(matrix))

    def calibrated(self, logit: np.ndarray) -> np.ndarray:
        """The probabilities of raw log-odds, through the Platt scaling fitted on the held-out snapshot."""
        slope, intercept = self.calibration
        return 1.0 / (1.0 + np.exp(-(slope * logit + intercept)))


def _noop(_: float, __: str) -> None:
    pass


@dataclass
class Scored:
    """What scoring hands back, rows in profile order: raw log-odds, the typical values, the screened reasons with
    each profile's headline values and effects in them, and each profile's top factors."""

    profile_ids: np.ndarray
    raw: np.ndarray
    typical: np.ndarray
    groups: list[factors.Reason]
    values: np.ndarray
    effects: np.ndarray
    per_profile: pd.DataFrame


class DuckDBExecutor:
    """Runs a run's heavy stages (labels, features, scoring, per-profile factors) in the store's own DuckDB. The
    Spark engine (``cai.spark_engine``) offers the same methods."""

    name = "duckdb"

    def __init__(self, db_path: store.Store | Path):
        self.db_path = db_path
        # Set on the readers ``sampled`` hands out: the connection whose temporary table holds the sampled customers'
        # events, and the sample it holds (in grains of ``features.SAMPLE_GRAIN``).
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._copied_grains: int | None = None

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._connection is not None:
            yield self._connection
            return
        with store.connect(self.db_path) as con:
            yield con

    @contextmanager
    def sampled(self, sample_fraction: float) -> Iterator[DuckDBExecutor]:
        """A reader like this executor whose labels and features take the sample of ``sample_fraction`` from a copy
        of its customers' events made once, in a temporary table: training reads them three or four times, and each
        read of the events table scans every event to hash its customer (at a million profiles, a 6% sample: copy
        0.6 s, then labels 0.45 -> 0.12 s and features 2.3 -> 1.3 s). The answers are the ones the events give.
        Above ``MAX_COPIED_SHARE`` the copy would cost more than it spares, and the reader is this executor."""
        if sample_fraction > MAX_COPIED_SHARE or self._connection is not None:
            yield self
            return
        # The copy belongs to this connection alone, and goes with it; this executor itself still reads the events.
        with store.connect(self.db_path) as con:
            sql, params = features.sampled_events_query(sample_fraction)
            con.execute(f"CREATE TEMP TABLE {SAMPLED_EVENTS} AS {sql}", params)
            reader = copy.copy(self)
            reader._connection, reader._copied_grains = con, features.sample_grains(sample_fraction)
            yield reader

    def _source(self, sample_fraction: float) -> tuple[str, float]:
        """The relation of events to read for a sample, and the sample to take from it: the copy holds every
        smaller sample (the hash decides them all), and exactly its own, which needs no hashing again."""
        grains = features.sample_grains(sample_fraction)
        if self._copied_grains is None or grains > self._copied_grains:
            return features.EVENTS, sample_fraction
        return f"temp.main.{SAMPLED_EVENTS}", 1.0 if grains == self._copied_grains else sample_fraction

    def labels(self, definition: Definition, snapshots: list[dt.date], sample_fraction: float = 1.0) -> pd.DataFrame:
        events, sample_fraction = self._source(sample_fraction)
        with self._connect() as con:
            return features.labels(con, definition, snapshots, sample_fraction=sample_fraction, events=events)

    def features(self, definition: Definition, snapshots: list[dt.date], with_labels: bool,
                 sample_fraction: float = 1.0, rows: pd.DataFrame | None = None) -> pd.DataFrame:
        events, sample_fraction = self._source(sample_fraction)
        with self._connect() as con:
            return features.build(con, definition, snapshots, with_labels=with_labels,
                                  sample_fraction=sample_fraction, rows=rows, events=events)

    def score(self, definition: Definition, as_of: dt.date, model: _Model, timings: dict) -> Scored | None:
        """Everyone eligible at ``as_of`` scored and explained; None when nobody is."""
        clock = time.monotonic()
        scoring = self.features(definition, [as_of], with_labels=False)
        timings["scoring_features_s"] = time.monotonic() - clock
        if scoring.empty:
            return None
        clock = time.monotonic()
        matrix = encode(scoring, model)
        typical = factors.typical_values(matrix, model.categorical)
        trees = model.trees
        groups = factors.screen(trees, matrix, typical, factors.reasons(model.feature_names), SEED)
        raw, effect_matrix = factors.Explainer(trees, typical, groups).logit_and_effects(matrix)
        timings["score_s"] = time.monotonic() - clock
        clock = time.monotonic()
        profile_ids = scoring["profile_id"].to_numpy()
        per_profile = factors.top_factors(profile_ids, matrix, typical, groups, effect_matrix, model.feature_names)
        timings["factors_s"] = time.monotonic() - clock
        headlines = [group.headline for group in groups]
        return Scored(profile_ids, raw, typical, groups, matrix[:, headlines], effect_matrix, per_profile)


def _encode(frame: pd.DataFrame, names: list[str], categorical: np.ndarray,
            categories: dict[str, list[str]]) -> np.ndarray:
    # Column-major: it is filled, binned and walked through the trees a feature at a time, and writing columns into
    # a row-major matrix cost ten times as long (0.5 s at 270,000 profiles).
    matrix = np.empty((len(frame), len(names)), order="F")
    for position, (name, is_categorical) in enumerate(zip(names, categorical)):
        values = frame[name]
        if is_categorical:
            known = categories[name]
            other = known.index(OTHER_CATEGORY) if OTHER_CATEGORY in known else np.nan
            missing = values.isna().to_numpy()
            codes = pd.Categorical(values.astype(str), categories=known).codes
            matrix[:, position] = np.where(missing, np.nan, np.where(codes >= 0, codes, other))
        else:
            matrix[:, position] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return matrix


def encode(frame: pd.DataFrame, model: _Model) -> np.ndarray:
    """The model's input matrix for a features frame, with categories coded as at training."""
    return _encode(frame, model.feature_names, model.categorical, model.categories)


def _learn_categories(frame: pd.DataFrame, catalog: list[features.Feature]) -> dict[str, list[str]]:
    """Each categorical feature's most common values, sorted, then the "other" category (codes follow the list)."""
    categories = {}
    for feature in catalog:
        if feature.kind == "categorical":
            counts = frame[feature.name].dropna().astype(str).value_counts()
            known = sorted(value for value in counts.index[:MAX_CATEGORIES] if value != OTHER_CATEGORY)
            categories[feature.name] = known + [OTHER_CATEGORY]
    return categories


def _snapshots(as_of: dt.date, first_event: dt.date, definition: Definition) -> tuple[dt.date, list[dt.date]]:
    """The held-out snapshot (label window ending at as-of) and earlier training snapshots whose label windows end
    by the held-out one's start, so evaluation never sees a period the model was trained on."""
    window = dt.timedelta(days=definition.window_days)
    needed = dt.timedelta(days=MIN_HISTORY_FLOOR_DAYS)
    holdout = as_of - window
    training = []
    snapshot = holdout - window
    while len(training) < MAX_TRAINING_SNAPSHOTS and snapshot - needed >= first_event:
        training.append(snapshot)
        snapshot -= dt.timedelta(days=SNAPSHOT_STEP_DAYS)
    return holdout, training


def _check_history(as_of: dt.date, first_event: dt.date | None, definition: Definition,
                   training_dates: list[dt.date], full_lookback: bool = True) -> None:
    """Adobe's rule (max(lookback, 30 days) + window of history), and at least one past snapshot to learn from.
    Without ``full_lookback`` only the second half applies: a backtest replays a protocol where "eligible" means
    any activity since the data began."""
    lookback = max(definition.eligible_days, MIN_HISTORY_FLOOR_DAYS)
    needed = lookback + definition.window_days if full_lookback else 0
    have = (as_of - first_event).days if first_event else 0
    if have < needed or not training_dates:
        needed = max(needed, MIN_HISTORY_FLOOR_DAYS + 2 * definition.window_days)
        raise CaiError(
            f"Not enough history: the data covers {have} days before the score date, and this set-up needs at least "
            f"{needed} (the eligibility lookback of {lookback} days plus the outcome window of "
            f"{definition.window_days} days, and room for one past window to learn from and one to check the "
            "model). Load more history, or shorten the outcome window or the lookback."
        )


def _check_examples(labels: np.ndarray, definition: Definition) -> None:
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives < definition.min_examples or negatives < definition.min_examples:
        raise CaiError(
            f"Too little data to learn from: the past snapshots hold {positives:,} customers who reached the goal "
            f"and {negatives:,} who did not; at least {definition.min_examples:,} of each are needed. Load more "
            "profiles or history, widen the eligible population, or lengthen the outcome window."
        )


def _stratified(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Caps training rows by keeping every goal-reacher (up to half) and sampling the rest; calibration on the
    untouched held-out snapshot restores true probabilities afterwards."""
    if len(frame) <= MAX_TRAINING_ROWS:
        return frame
    positives = frame[frame["label"]]
    positives = positives.sample(min(len(positives), MAX_TRAINING_ROWS // 2), random_state=seed)
    negatives = frame[~frame["label"]]
    negatives = negatives.sample(min(len(negatives), MAX_TRAINING_ROWS - len(positives)), random_state=seed)
    return pd.concat([positives, negatives]).sort_values(["snapshot", "profile_id"])


def _validation_rows(train: pd.DataFrame) -> np.ndarray:
    """Early stopping's validation rows: the latest training snapshot, the closest to the future the model is for.
    Its customers' earlier snapshots are in training, but its outcome window is not, so its loss stops improving
    when the trees start learning the past windows' noise. No rows with a single snapshot (then all trees are kept)."""
    snapshots = train["snapshot"].to_numpy()
    if len(np.unique(snapshots)) < 2:
        return np.zeros(len(snapshots), dtype=bool)
    return snapshots == snapshots.max()


def _tree_choice_rows(train: pd.DataFrame, seed: int) -> np.ndarray:
    """The rows of a random ``TREE_CHOICE_SHARE`` of the training customers (all their snapshots), drawn with the
    seed: the rows early stopping fits on."""
    customers, position = np.unique(train["profile_id"].to_numpy(), return_inverse=True)
    drawn = np.random.default_rng(seed).random(len(customers)) < TREE_CHOICE_SHARE
    return drawn[position]


def rate_moves(labels: pd.DataFrame, window_days: int) -> list[float]:
    """How the goal's rate moved from each snapshot to the one a window later (relative changes), over the snapshots
    a run learns and checks on: what carrying one window's level into the next, as calibration does, would have
    missed by in those months. Pairs are a window apart to within half the snapshots' step."""
    rates = labels.groupby("snapshot")["label"].mean()
    moves = []
    for earlier, earlier_rate in rates.items():
        for later, later_rate in rates.items():
            gap = (later - earlier).days
            if gap > 0 and abs(gap - window_days) <= SNAPSHOT_STEP_DAYS // 2 and earlier_rate > 0:
                moves.append(float(later_rate / earlier_rate - 1))
    return moves


def largest_rate_move(moves: list[float]) -> float | None:
    """The share by which a run's expected conversions may miss the next window, as the rate moved in the past: the
    largest move; None from fewer than ``MIN_RATE_MOVES`` moves."""
    return max(map(abs, moves)) if len(moves) >= MIN_RATE_MOVES else None


def year_ago_move(executor, definition: Definition, as_of: dt.date, first_event: dt.date,
                  sample_fraction: float = 1.0) -> dict | None:
    """How the goal's rate moved a year before ``as_of``, from the window matching the one that calibrates a run
    (ending a window before as-of) to the window matching the one the run is for; None without a year plus a window
    of history. Both rates are of customers active within the same lookback (the definition's, or what the data
    holds before the earlier window when that is shorter), so a lookback cut short by the data's start cannot pass
    for a move.

    The move is measured in the rate's intensity, -log(1 - rate): a season multiplies how often customers act, and
    the share who act at least once grows less than that as it nears 1, so a rate's own ratio would not carry from
    one level to another. ``carried`` is the intensity ratio to carry forward: 1 unless the move exceeds
    ``SEASON_Z`` standard errors."""
    later = as_of - dt.timedelta(days=YEAR_DAYS)
    earlier = later - dt.timedelta(days=definition.window_days)
    lookback = min(definition.eligible_days, (earlier - first_event).days)
    if lookback < min(definition.eligible_days, MIN_SEASON_LOOKBACK_DAYS):
        return None
    labels = executor.labels(replace(definition, eligible_days=lookback), [earlier, later], sample_fraction)
    rates = labels.groupby("snapshot")["label"].agg(["mean", "size"]).sort_index()
    if len(rates) < 2 or not ((0 < rates["mean"]) & (rates["mean"] < 1)).all():
        return None
    (before, customers_before), (after, customers_after) = rates.itertuples(index=False)
    log_move = float(np.log(np.log1p(-after) / np.log1p(-before)))
    # The delta method: var(log intensity) = var(rate) / ((1 - rate) intensity)^2, var(rate) = rate (1 - rate) / n.
    standard_error = float(np.sqrt(sum(
        rate / (customers * (1 - rate) * np.log1p(-rate) ** 2)
        for rate, customers in ((before, customers_before), (after, customers_after)))))
    return {"from": earlier.isoformat(), "to": later.isoformat(), "lookback_days": lookback,
            "rates": [float(before), float(after)], "customers": [int(customers_before), int(customers_after)],
            "move": float(after / before - 1), "standard_error": standard_error,
            "carried": float(np.exp(log_move)) if abs(log_move) > SEASON_Z * standard_error else 1.0}


def carry_forward(logit: np.ndarray, calibration: tuple[float, float], intensity_ratio: float) -> float:
    """The log-odds to add to the calibration's intercept so that the mean probability over ``logit`` becomes the
    rate whose intensity is ``intensity_ratio`` times the current one: a shift keeps every customer's order and
    every reason's direction."""
    slope, intercept = calibration
    linear = slope * logit + intercept
    current = float(np.mean(1 / (1 + np.exp(-linear))))
    target = -np.expm1(intensity_ratio * np.log1p(-current))
    low, high = -20.0, 20.0
    for _ in range(60):  # bisection: the mean probability rises with the shift
        middle = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(linear + middle)))) < target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def _fit(train: pd.DataFrame, holdout: pd.DataFrame, catalog, definition: Definition, seed: int = SEED) -> _Model:
    categories = _learn_categories(train, catalog)
    names = [feature.name for feature in catalog]
    categorical = np.array([feature.kind == "categorical" for feature in catalog])
    x_train = _encode(train, names, categorical, categories)
    # scikit-learn cannot bin a column with no value at all (say, email rates in a shop that sends no email).
    x_train[:, np.isnan(x_train).all(axis=0)] = 0.0
    y_train = train["label"].to_numpy(dtype=bool)
    classifier = HistGradientBoostingClassifier(
        **MODEL_PARAMS, categorical_features=categorical if categorical.any() else None, random_state=seed)
    validation = _validation_rows(train)
    if validation.any():
        # The latest snapshot chooses the number of trees, fitted on a share of the other rows; then every row, the
        # latest snapshot's included, fits that many trees.
        choosing = ~validation & _tree_choice_rows(train, seed)
        classifier.fit(x_train[choosing], y_train[choosing], X_val=x_train[validation], y_val=y_train[validation])
        classifier.set_params(max_iter=classifier.n_iter_)
    classifier.set_params(early_stopping=False).fit(x_train, y_train)

    # Platt scaling on half the held-out profiles, evaluation on the other half: strictly monotone, so
    # calibrating never changes a factor's direction, and evaluation never sees the rows that calibrated it.
    x_holdout = _encode(holdout, names, categorical, categories)
    y_holdout = holdout["label"].to_numpy(dtype=bool)
    in_calibration = (holdout["profile_id"].to_numpy() % 2) == 0
    raw = classifier.decision_function(x_holdout) if len(holdout) else np.array([])
    calibration_labels = y_holdout[in_calibration]
    if len(calibration_labels) and 0 < calibration_labels.sum() < len(calibration_labels):
        platt = LogisticRegression(C=1e4).fit(raw[in_calibration].reshape(-1, 1), calibration_labels)
        calibration = (float(platt.coef_[0][0]), float(platt.intercept_[0]))
    else:
        calibration = (1.0, 0.0)
    model = _Model(classifier, calibration, names, categorical, categories, evaluation={}, training={})
    eval_rows = ~in_calibration
    model.evaluation = evaluation.evaluate(
        y_holdout[eval_rows], model.probability(x_holdout[eval_rows]) if eval_rows.any() else np.array([]),
        definition.low_threshold, definition.high_threshold,
    )
    model.training = {
        "training_rows": int(len(train)), "training_conversions": int(y_train.sum()),
        "holdout_rows": int(len(holdout)), "holdout_conversions": int(y_holdout.sum()),
        "iterations": int(classifier.n_iter_), "validation_rows": int(validation.sum()),
        "validation_snapshot": pd.Timestamp(train["snapshot"].max()).date().isoformat() if validation.any() else None,
    }
    return model


def _data_fingerprint(con, as_of: dt.date) -> str:
    row = con.execute(
        """
        SELECT count(*), min(ts), max(ts), sum(hash(profile_id, ts, event_type, value) % 1000003),
               (SELECT count(*) FROM profiles), (SELECT sum(hash(profile_id, loyalty_tier, loyalty_points, country,
               city, gender, birth_year) % 1000003) FROM profiles),
               (SELECT sum(hash(profile_id, attribute, valid_from, value) % 1000003) FROM profile_attribute_versions
                WHERE valid_from <= CAST($as_of AS TIMESTAMP))
        FROM events WHERE ts < CAST($as_of AS TIMESTAMP)
        """,
        {"as_of": as_of.isoformat()},
    ).fetchall()[0]
    return json.dumps([str(value) for value in row])


def cache_key(definition: Definition, fingerprint: str, as_of: dt.date) -> str:
    payload = json.dumps([definition.to_json(), fingerprint, as_of.isoformat(), sklearn.__version__, MODEL_PARAMS,
                          TREE_CHOICE_SHARE, features.FEATURES_VERSION])
    return hashlib.sha256(payload.encode()).hexdigest()


def reference_rate(db_path: Path, name: str) -> float | None:
    """The rate a score of 50 stands for: the mean probability of the instance's first successful run, fixed from
    then on so that a score (and a saved "score >= 75" segment) means the same thing in every later run."""
    with store.connect(db_path) as con:
        rows = con.execute(
            "SELECT r.details FROM runs r JOIN instances i USING (instance_id) "
            "WHERE i.name = ? AND r.status = 'success' ORDER BY r.run_id LIMIT 1", [name]).fetchall()
    return json.loads(rows[0][0]).get("reference_rate") if rows and rows[0][0] else None


def _start_run(db_path: Path, name: str, as_of: dt.date, actor: str) -> tuple[int, int]:
    postgres = store.resolve(db_path).is_postgres

    def work(con):
        rows = con.execute("SELECT instance_id, status FROM instances WHERE name = ?", [name]).fetchall()
        if not rows:
            raise NotFound(f"There is no instance named {name!r}.")
        instance_id, status = rows[0]
        running = con.execute("SELECT run_id, pid, host FROM runs WHERE instance_id = ? AND status = 'running'",
                              [instance_id]).fetchall()
        alive = [run for run in running if _run_alive(con, run, postgres)]
        if status == TRAINING and alive:
            host = alive[0][2]
            elsewhere = f" on {host}" if postgres and host not in (None, store.this_host()) else ""
            raise CaiError(
                f"{name!r} is already being trained{elsewhere}. Wait for that run to finish; if its machine stopped "
                f"(a restart, say), it is marked interrupted once it has been silent for "
                f"{store.RUN_STALE_SECONDS / 60:g} minutes.")
        run_id = store.next_id(con, "runs", "run_id")
        con.execute(
            "INSERT INTO runs (run_id, instance_id, status, as_of, started_at, pid, host, heartbeat_at) "
            "VALUES (?, ?, 'running', ?, current_timestamp, ?, ?, current_timestamp)",
            [run_id, instance_id, as_of, os.getpid(), store.this_host()],
        )
        con.execute("UPDATE instances SET status = ?, status_reason = NULL, updated_at = current_timestamp "
                    "WHERE instance_id = ?", [TRAINING, instance_id])
        audit.record(con, actor, "run", "instance", name, {"as_of": as_of.isoformat()})
        return run_id, instance_id

    run_id, instance_id = store.write(db_path, work)
    store.start_heartbeat(db_path, "runs", "run_id", run_id, "running")
    return run_id, instance_id


def _run_alive(con, run: tuple[int, int | None, str | None], postgres: bool) -> bool:
    """A run on this machine is alive while its process is (and, in this process, while it is still working); one
    on another machine sharing a PostgreSQL store, while its heartbeat is recent."""
    run_id, pid, host = run
    return store.worker_alive(con, "runs", "run_id", run_id, pid, host, postgres, _active_here)


def recover_interrupted_runs(db_path: Path) -> int:
    """Marks runs whose process (or, on PostgreSQL, machine) is gone as interrupted, and gives their instance back
    its last good state; deliveries cut off the same way are marked failed, and file loads interrupted (see
    ``activation.recover_interrupted_deliveries`` and ``ingest.recover_interrupted_loads``). Returns the runs
    marked."""
    postgres = store.resolve(db_path).is_postgres

    def work(con):
        stale = [(run_id, instance_id) for run_id, instance_id, pid, host in con.execute(
            "SELECT run_id, instance_id, pid, host FROM runs WHERE status = 'running'").fetchall()
            if not _run_alive(con, (run_id, pid, host), postgres)]
        for run_id, instance_id in stale:
            con.execute("UPDATE runs SET status = 'interrupted', finished_at = current_timestamp, error = 'The run "
                        "stopped before it finished (its process or machine stopped).' WHERE run_id = ?", [run_id])
            con.execute(
                "UPDATE instances SET status = CASE WHEN current_run_id IS NULL THEN ? ELSE ? END, "
                "status_reason = 'The last run was interrupted before it finished; the previous scores are kept.' "
                "WHERE instance_id = ? AND status = ?",
                [ERROR, SUCCESS, instance_id, TRAINING],
            )
        activation.recover_interrupted_deliveries(con, postgres)
        ingest.recover_interrupted_loads(con, postgres)
        return len(stale)

    return store.write(db_path, work)


_active_runs: set[int] = set()


def _active_here(run_id: int) -> bool:
    return run_id in _active_runs


def _fail_run(db_path: Path, run_id: int, instance_id: int, message: str, started: float) -> None:
    def work(con):
        con.execute("UPDATE runs SET status = 'error', error = ?, finished_at = current_timestamp, duration_s = ? "
                    "WHERE run_id = ?", [message, time.monotonic() - started, run_id])
        con.execute("UPDATE instances SET status = ?, status_reason = ?, updated_at = current_timestamp "
                    "WHERE instance_id = ?", [ERROR, message, instance_id])

    store.write(db_path, work)


def _global_factors(model: _Model, catalog, scored: Scored, bucket: np.ndarray) -> pd.DataFrame:
    """The reasons ranked by mean strength, each shown through its headline feature's distribution per bucket."""
    rows = []
    effect_matrix = scored.effects
    strength = np.abs(effect_matrix).mean(axis=0) if len(effect_matrix) else np.zeros(len(scored.groups))
    in_bucket = {name: bucket == name for name in evaluation.BUCKETS}
    for rank, position in enumerate(np.argsort(-strength)[:10], start=1):
        feature = catalog[scored.groups[position].headline]
        by_bucket = factors.bucket_distributions(
            scored.values[:, position], in_bucket, feature.kind == "categorical", model.categories.get(feature.name))
        for name, mask in in_bucket.items():
            by_bucket[name]["importance"] = float(np.abs(effect_matrix[mask, position]).mean()) if mask.any() else 0.0
        rows.append({"feature": feature.name, "label": feature.label, "description": feature.description,
                     "kind": feature.kind, "importance": float(strength[position]), "rank": rank,
                     "by_bucket": json.dumps(by_bucket)})
    return pd.DataFrame(rows, columns=["feature", "label", "description", "kind", "importance", "rank", "by_bucket"])


def _without_profiles_gone(con, scores: pd.DataFrame, per_profile: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A load may merge profiles away while a run computes. The swap keeps only the results of profiles that still
    exist, inside its own transaction (which claims the profile set, so a load committing meanwhile makes it start
    over), and the outcome is exactly that of the run finishing just before the load (whose merge removes the
    scores of the profiles it merges away)."""
    con.register("scored_profile_ids", scores[["profile_id"]])
    gone = {row[0] for row in con.execute(
        "SELECT profile_id FROM scored_profile_ids ANTI JOIN profiles USING (profile_id)").fetchall()}
    con.unregister("scored_profile_ids")
    if not gone:
        return scores, per_profile
    log.info("%d scored profiles were merged away by a load during the run; their results are dropped.", len(gone))
    return scores[~scores["profile_id"].isin(gone)], per_profile[~per_profile["profile_id"].isin(gone)]


def train(db_path: Path, definition: Definition, as_of: dt.date, first_event: dt.date,
          progress: Progress = _noop, timings: dict | None = None,
          full_lookback: bool = True, seed: int = SEED, executor=None) -> tuple[_Model, pd.DataFrame]:
    """The model a run on ``as_of`` learns, and its held-out snapshot (labels in the window ending at ``as_of``).
    ``seed`` only changes the random parts (sampling, tree fitting), to measure how much figures depend on them.
    Raises CaiError when the data cannot support it."""
    timings = timings if timings is not None else {}
    holdout_date, training_dates = _snapshots(as_of, first_event, definition)
    _check_history(as_of, first_event, definition, training_dates, full_lookback)
    catalog = features.feature_catalog(definition)
    progress(0.15, f"Building features for {len(training_dates)} training snapshots")
    clock = time.monotonic()
    with store.connect(db_path) as con:
        population = features.profiles_with_history(con, as_of)
    fraction = min(1.0, MAX_PROFILES_PER_SNAPSHOT / max(population, 1))
    executor = executor or DuckDBExecutor(db_path)
    dates = [*training_dates, holdout_date]
    with executor.sampled(fraction) as source:
        # Labels first (a cheap pass), so that the features, the costly part, are built only for the training rows
        # fitting keeps and the held-out snapshot: the same rows, so the same model, as building them all first.
        labels = source.labels(definition, dates, sample_fraction=fraction)
        labelled = labels[(labels["snapshot"] != pd.Timestamp(holdout_date)).to_numpy()].reset_index(drop=True)
        _check_examples(labelled["label"].to_numpy(dtype=bool), definition)
        kept = _stratified(labelled, seed)
        rows = None
        if len(kept) < len(labelled):
            rows = pd.concat([kept, labels[(labels["snapshot"] == pd.Timestamp(holdout_date)).to_numpy()]])
        # One pass over the events for every snapshot, the held-out one (the latest) included.
        snapshots = source.features(definition, dates, with_labels=True, sample_fraction=fraction, rows=rows)
        held_out = (snapshots["snapshot"] == pd.Timestamp(holdout_date)).to_numpy()
        examples, holdout = snapshots[~held_out].reset_index(drop=True), snapshots[held_out].reset_index(drop=True)
        moves = rate_moves(labels, definition.window_days)
        del snapshots, labels
        season = year_ago_move(source, definition, as_of, first_event, fraction)
    timings["training_features_s"] = time.monotonic() - clock
    progress(0.35, f"Training on {len(examples):,} examples")
    clock = time.monotonic()
    model = _fit(examples, holdout, catalog, definition, seed)
    # The held-out window sets the probabilities' level; the next window's level moves with the season, which last
    # year's same move foretells where the data reaches back that far.
    if season and season["carried"] != 1.0 and len(holdout):
        shift = carry_forward(model.logit(encode(holdout, model)), model.calibration, season["carried"])
        model.calibration = (model.calibration[0], model.calibration[1] + shift)
        season["log_odds_shift"] = shift
    model.training.update({"sample_fraction": fraction, "training_snapshots": [d.isoformat() for d in training_dates],
                           "holdout_snapshot": holdout_date.isoformat(), "rate_moves": moves,
                           "forward_range": largest_rate_move(moves), "season": season})
    timings["train_s"] = time.monotonic() - clock
    return model, holdout


def run_instance(db_path: Path, name: str, as_of: dt.date | None = None, progress: Progress | None = None,
                 actor: str = "local", executor=None) -> RunResult:
    """Trains (or reuses a cached model), scores everyone eligible at ``as_of`` and swaps in the results. The
    ``executor`` runs the heavy stages: the store's DuckDB by default, or a ``spark_engine.SparkExecutor``."""
    progress = progress or _noop
    executor = executor or DuckDBExecutor(db_path)
    started = time.monotonic()
    definition = get_instance(db_path, name).definition
    with store.connect(db_path) as con:
        first_event, last_event = con.execute("SELECT min(ts), max(ts) FROM events").fetchall()[0]
        as_of = as_of or features.default_as_of(con)
    if last_event is None:
        raise CaiError("There are no events yet. Load a dataset on the Data page first.")
    run_id, instance_id = _start_run(db_path, name, as_of, actor)
    _active_runs.add(run_id)
    timings: dict[str, float] = {}
    try:
        progress(0.05, "Checking the data")
        catalog = features.feature_catalog(definition)
        with store.connect(db_path) as con:
            fingerprint = _data_fingerprint(con, as_of)
        key = cache_key(definition, fingerprint, as_of)
        model, cache_note = models.load(db_path, key)
        signed_model = None
        if model is None:
            model, _ = train(db_path, definition, as_of, first_event.date(), progress, timings, executor=executor)
            signed_model = models.sign(db_path, key, model)

        progress(0.55, "Scoring every eligible profile and finding its influential factors")
        scored = executor.score(definition, as_of, model, timings)
        if scored is None:
            raise CaiError(
                f"No profile is eligible on {as_of}: nobody was active in the {definition.eligible_days} days "
                "before it. Widen the eligible population or choose another score date."
            )
        clock = time.monotonic()
        probability = model.calibrated(scored.raw)
        base_rate = float(probability.mean())
        anchor = reference_rate(db_path, name) or base_rate
        score = evaluation.scores_from_probabilities(probability, anchor)
        bucket = evaluation.buckets(score, definition.low_threshold, definition.high_threshold)
        percentile = evaluation.percentiles(score)
        global_factors = _global_factors(model, catalog, scored, bucket)
        timings["summarise_s"] = time.monotonic() - clock
        profile_ids, per_profile, typical = scored.profile_ids, scored.per_profile, scored.typical

        progress(0.85, "Saving the scores")
        # Buckets as categories: DuckDB reads 274,561 labels from them in half the time it takes from strings.
        scores = pd.DataFrame({"profile_id": profile_ids, "probability": probability, "score": score,
                               "percentile": percentile,
                               "bucket": pd.Categorical(bucket, categories=list(evaluation.BUCKETS))})
        counts = {name: int((bucket == name).sum()) for name in evaluation.BUCKETS}
        metrics = {key: model.evaluation[key] for key in ("auc", "average_precision", "brier", "lift_top_decile",
                                                          "grade", "advice")}
        details = {
            "as_of": as_of.isoformat(), "base_rate": base_rate, "reference_rate": anchor,
            "cache": cache_note if signed_model is None
            else ("trained a new model" if cache_note == "no cached model" else cache_note),
            "model": key, "features": len(catalog),
            "data_first_event": first_event.isoformat(), "data_last_event": last_event.isoformat(),
            "training": model.training, "timings": timings, "engine": executor.name,
            "sklearn_version": sklearn.__version__,
            "typical": {model.feature_names[c]: (None if np.isnan(typical[c]) else float(typical[c]))
                        for c in range(len(typical))},
            "categories": model.categories,
        }

        def swap(con):
            clock = time.monotonic()
            identity.claim_profile_set(con)
            kept_scores, kept_factors = _without_profiles_gone(con, scores, per_profile)
            if signed_model:
                models.save(con, signed_model)
            con.register("new_scores", kept_scores)
            con.execute("INSERT INTO scores SELECT $run, profile_id, probability, score, percentile, bucket "
                        "FROM new_scores", {"run": run_id})
            con.register("new_factors", kept_factors)
            con.execute("INSERT INTO score_factors SELECT $run, profile_id, rank, feature, value, typical, effect, "
                        "importance FROM new_factors", {"run": run_id})
            con.register("new_run_factors", global_factors)
            con.execute("INSERT INTO run_factors SELECT $run, feature, label, description, kind, importance, rank, "
                        "by_bucket FROM new_run_factors", {"run": run_id})
            timings["write_s"] = time.monotonic() - clock
            con.execute(
                "UPDATE runs SET status = 'success', finished_at = current_timestamp, duration_s = ?, "
                "profiles_scored = ?, buckets = ?, metrics = ?, evaluation = ?, details = ? WHERE run_id = ?",
                [time.monotonic() - started, len(kept_scores),
                 json.dumps(kept_scores["bucket"].value_counts().reindex(evaluation.BUCKETS, fill_value=0).to_dict()),
                 json.dumps(metrics),
                 json.dumps(model.evaluation), json.dumps(details), run_id],
            )
            con.execute(
                "UPDATE instances SET status = ?, status_reason = ?, current_run_id = ?, "
                "updated_at = current_timestamp WHERE instance_id = ?",
                [SUCCESS, metrics["advice"], run_id, instance_id],
            )

        store.write(db_path, swap)
        activation.deliver_after_run(db_path, instance_id, actor)
        progress(1.0, "Done")
        return RunResult(run_id, name, SUCCESS, as_of.isoformat(), None, len(scores), counts,
                         {k: v for k, v in metrics.items() if k != "advice"}, time.monotonic() - started)
    except CaiError as error:
        _fail_run(db_path, run_id, instance_id, str(error), started)
        return RunResult(run_id, name, ERROR, as_of.isoformat(), str(error), duration_s=time.monotonic() - started)
    except Exception as error:
        log.exception("Run %s of %r failed", run_id, name)
        message = f"The run failed unexpectedly ({type(error).__name__}: {error}). The previous scores are kept."
        _fail_run(db_path, run_id, instance_id, message, started)
        return RunResult(run_id, name, ERROR, as_of.isoformat(), message, duration_s=time.monotonic() - started)
    finally:
        _active_runs.discard(run_id)
