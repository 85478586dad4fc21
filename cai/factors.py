"""Influential factors: how much each business-level reason moves a profile's score compared with a typical customer.

A reason groups features that describe one thing: recent activity (when the customer last did anything, bought,
browsed, added to the cart, opened an email..., and how active the last month was), purchase frequency, spend,
engagement (how much the customer browsed, added to the cart, checked out, viewed pages and searched), email (how
many emails the customer opened and clicked), each profile attribute and each custom event. Its effect is the change
in the model's log-odds when all of its features are set back together to the population's typical values;
reporting exactly that change keeps every reason faithful. Undoing a group rather than one feature matters: setting
only "days since the last cart addition" to the typical 35 days while "cart additions in the last 7 days" stays at 2
asks the model about a customer that cannot exist, and its answer there contradicted what the buckets show.

Groups also keep the top reason stable across retrains, where correlated features trade places: every "days since"
is one reason and every "how many" another, because with browsing and the cart as reasons apart from recency, a
retrain on other customers moved the top reason between them for a third of the customers (``bench.reasons``).

A reason is named, for each profile, by one of its features with that feature's value and typical value: the first,
in the reason's naming order, whose own difference from the typical value points the way the reason's effect does
(in the population, higher values of "days since the last activity" go with lower scores, so 11 days against a
typical 16 names a reason that raises the score, never one that lowers it). A reason no feature of which can name
without contradicting itself is not shown, unless it is the profile's only one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from cai.features import STANDARD_ACTIVITIES

SCREENING_ROWS = 3_000
TOP_PER_PROFILE = 3
CHUNK_ROWS = 16_384
MAX_SPLITS_PER_TREE = 15
# Category codes a categorical split tells apart (scikit-learn's own limit); a larger code counts as unknown.
CATEGORY_CODES = 256
HIGH_EFFECT, MEDIUM_EFFECT = 0.5, 0.2
IMPORTANCE_LEVELS = ["low", "medium", "high"]
NO_EFFECT = 1e-9

RECENCY_FEATURES = ("last_activity_days", "active_days_30d", "activity_trend",
                    *(f"{key}_days_since" for key, _, _ in STANDARD_ACTIVITIES))
# Feature name prefixes of each reason (a feature belongs to the first reason that claims it), and the feature that
# names the reason on the dashboard and first tries to name it in a profile's sentences.
REASON_GROUPS = [
    ("recent activity", "last_activity_days", RECENCY_FEATURES),
    ("purchase frequency", "purchase_days_365d",
     ("purchases_", "purchase_days_", "first_purchase_days", "purchase_gap_")),
    ("spend", "purchase_value_365d", ("purchase_value_", "average_order_value")),
    ("engagement", "product_views_90d",
     ("product_views_", "distinct_products_", "view_to_cart_", "cart_adds_", "checkouts_", "cart_to_purchase_",
      "page_views_", "searches_", "mobile_share_", "tenure_days")),
    ("email", "email_opens_90d", ("email_",)),
]


@dataclass(frozen=True)
class Namer:
    """A feature that can name its reason, and which way its values go with the score in the population: +1 when
    higher values go with higher scores, -1 the other way, 0 when they do not say; ``missing`` the same for having
    no value against having one. A category has no direction: any category names its reason."""

    column: int
    direction: int = 0
    missing: int = 0
    categorical: bool = False

    def agrees(self, values: np.ndarray, typical: float, effect_sign: np.ndarray) -> np.ndarray:
        """Whether each value's difference from the typical value points the way of the reason's effect."""
        if self.categorical:
            return np.ones(len(values), dtype=bool)
        missing = np.isnan(values)
        if np.isnan(typical):
            pointing = np.where(missing, 0, -self.missing)
        else:
            pointing = np.where(missing, self.missing, self.direction * np.sign(np.nan_to_num(values - typical)))
        return (pointing == effect_sign) & (effect_sign != 0)


@dataclass(frozen=True)
class Reason:
    name: str
    headline: int
    members: tuple[int, ...]
    # Set by screening: the members in the order they are tried to name the reason (headline first).
    namers: tuple[Namer, ...] = field(default=(), compare=False)


def reasons(names: list[str]) -> list[Reason]:
    """The reasons for a model's features (column indices); each feature belongs to exactly one reason."""
    groups, claimed = [], set()
    for name, headline, prefixes in REASON_GROUPS:
        members = tuple(i for i, feature in enumerate(names) if feature.startswith(prefixes) and i not in claimed)
        if members and headline in names:
            groups.append(Reason(name, names.index(headline), members))
            claimed.update(members)
    # Profile attributes and custom events each stand alone: custom events by their own activity prefix.
    for i, feature in enumerate(names):
        if i in claimed:
            continue
        prefix = feature.rsplit("_", 1)[0] + "_" if feature.startswith("custom_") else feature
        members = tuple(j for j, other in enumerate(names) if j not in claimed and other.startswith(prefix))
        headline = next((j for j in members if names[j].endswith("_days_since")), i)
        groups.append(Reason(feature if not feature.startswith("custom_") else prefix, headline, members))
        claimed.update(members)
    return groups


def typical_values(matrix: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    """Median (numeric) or most common code (categorical); missing when most customers have no value."""
    typical = np.full(matrix.shape[1], np.nan)
    for column in range(matrix.shape[1]):
        values = matrix[:, column]
        present = values[~np.isnan(values)]
        if len(present) * 2 < len(values) or len(present) == 0:
            continue
        if categorical[column]:
            codes, counts = np.unique(present, return_counts=True)
            typical[column] = codes[np.argmax(counts)]
        else:
            typical[column] = float(np.median(present))
    return typical


class Trees:
    """A fitted scikit-learn gradient boosting classifier's trees as arrays, to move whole columns of profiles
    through them at once. Every split's decision is computed for every profile (not only those on its path), and a
    tree's leaf is then a lookup of the bits of its splits' decisions in a table of its leaf values. Undoing a reason
    fixes the bits of the splits on the reason's features, in the trees that have such splits only: the other trees
    answer the same either way. Decisions follow scikit-learn's own predictor exactly (missing values, categories
    unseen in training, the encoder that moves categorical columns first), so effects equal re-scoring's to float
    rounding."""

    def __init__(self, classifier):
        predictors = [iteration[0] for iteration in classifier._predictors]
        self.baseline = float(np.ravel(classifier._baseline_prediction)[0])
        self.width = max(int((predictor.nodes["is_leaf"] == 0).sum()) for predictor in predictors)
        if self.width > MAX_SPLITS_PER_TREE:
            raise ValueError(f"Factors need trees of at most {MAX_SPLITS_PER_TREE + 1} leaves.")
        original = _original_columns(classifier)
        ordinals = _category_ordinals(classifier)
        known, known_row = classifier._bin_mapper.make_known_categories_bitsets()
        slots = len(predictors) * self.width
        self.column = np.full(slots, -1)
        self.threshold = np.full(slots, np.nan)
        self.missing_left = np.zeros(slots, dtype=bool)
        # Categorical splits: whether each code goes left, the last entry standing for a missing or unknown code.
        self.category_left: dict[int, np.ndarray] = {}
        self.values = np.zeros((len(predictors), 2 ** self.width))
        codes = np.arange(2 ** self.width)
        for tree, predictor in enumerate(predictors):
            nodes = predictor.nodes
            splits = np.flatnonzero(nodes["is_leaf"] == 0)
            bit_of = np.zeros(len(nodes), dtype=np.int64)
            bit_of[splits] = np.arange(len(splits))
            for bit, node in enumerate(splits):
                slot = tree * self.width + bit
                self.column[slot] = original[nodes["feature_idx"][node]]
                self.missing_left[slot] = bool(nodes["missing_go_to_left"][node])
                if nodes["is_categorical"][node]:
                    self.category_left[slot] = _category_directions(
                        ordinals[self.column[slot]], predictor.raw_left_cat_bitsets[nodes["bitset_idx"][node]],
                        known[known_row[nodes["feature_idx"][node]]], self.missing_left[slot])
                else:
                    self.threshold[slot] = nodes["num_threshold"][node]
            node = np.zeros(len(codes), dtype=np.int64)
            for _ in range(int(nodes["depth"].max())):
                goes_left = (codes >> bit_of[node]) & 1 == 1
                node = np.where(nodes["is_leaf"][node] == 1, node,
                                np.where(goes_left, nodes["left"][node], nodes["right"][node]))
            self.values[tree] = nodes["value"][node]
        self.by_column = {column: np.flatnonzero(self.column == column) for column in np.unique(self.column)
                          if column >= 0}
        self.categorical = {int(self.column[slot]) for slot in self.category_left}

    def decisions(self, columns: np.ndarray) -> np.ndarray:
        """Per split and profile whether the profile goes left, from the matrix transposed (one row per feature)."""
        result = np.zeros((len(self.column), columns.shape[1]), dtype=bool)
        for column, slots in self.by_column.items():
            values = columns[column]
            categorical = [slot for slot in slots if slot in self.category_left]
            if categorical:
                code = np.where((values >= 0) & (values < CATEGORY_CODES), values, CATEGORY_CODES)
                code = np.nan_to_num(code, nan=CATEGORY_CODES).astype(np.int64)
                result[categorical] = np.stack([self.category_left[slot] for slot in categorical])[:, code]
            numeric = slots[~np.isnan(self.threshold[slots])]
            for missing_left, compared in ((False, values), (True, np.where(np.isnan(values), -np.inf, values))):
                chosen = numeric[self.missing_left[numeric] == missing_left]
                if len(chosen):
                    result[chosen] = compared[None, :] <= self.threshold[chosen][:, None]
        return result

    def codes(self, columns: np.ndarray) -> np.ndarray:
        """Per tree and profile the bits of its splits' decisions, the index into the tree's table of leaf values."""
        decided = self.decisions(columns).reshape(len(self.values), self.width, columns.shape[1])
        codes = np.zeros(decided.shape[::2], dtype=np.uint16)
        for bit in range(self.width):
            codes |= decided[:, bit].astype(np.uint16) << bit
        return codes

    def leaf_sum(self, matrix: np.ndarray) -> np.ndarray:
        """The model's log-odds, less its constant starting value, per row of the matrix."""
        codes = self.codes(np.ascontiguousarray(matrix.T))
        return self.values[np.arange(len(self.values))[:, None], codes].sum(axis=0)

    def logit(self, matrix: np.ndarray) -> np.ndarray:
        """The model's log-odds per row, as scikit-learn's ``decision_function`` gives them to float rounding, about
        three times faster (a split decided per column at once, not a tree walked per row), in chunks that keep
        the decisions' memory small."""
        return self.baseline + np.concatenate(
            [self.leaf_sum(matrix[start:start + CHUNK_ROWS]) for start in range(0, len(matrix), CHUNK_ROWS)]
            or [np.empty(0)])


def _original_columns(classifier) -> np.ndarray:
    """The input column of each column the trees split on: scikit-learn moves categorical columns first."""
    if getattr(classifier, "_preprocessor", None) is None:
        return np.arange(classifier.n_features_in_)
    given = np.asarray(classifier.is_categorical_)
    return np.concatenate([np.flatnonzero(given), np.flatnonzero(~given)])


def _category_ordinals(classifier) -> dict[int, np.ndarray]:
    """For each categorical input column, the ordinal scikit-learn's encoder gives each code (-1 when unseen)."""
    if getattr(classifier, "_preprocessor", None) is None:
        return {}
    seen = classifier._preprocessor.named_transformers_["encoder"].categories_
    result = {}
    for column, categories in zip(np.flatnonzero(classifier.is_categorical_), seen):
        ordinal = np.full(CATEGORY_CODES, -1)
        for position, code in enumerate(categories):
            if not np.isnan(code) and 0 <= code < CATEGORY_CODES and code == int(code):
                ordinal[int(code)] = position
        result[int(column)] = ordinal
    return result


def _category_directions(ordinal: np.ndarray, left: np.ndarray, known: np.ndarray, missing_left: bool) -> np.ndarray:
    """Whether each code (and, last, a missing one) goes left at a categorical split, as scikit-learn decides: in the
    split's left set, left; a known category, right; an unknown one, the way missing values go."""
    def member(bitset: np.ndarray, value: int) -> bool:
        return bool((bitset[value // 32] >> (value % 32)) & 1)

    directions = np.full(CATEGORY_CODES + 1, missing_left)
    for code, value in enumerate(ordinal):
        if value >= 0:
            directions[code] = True if member(left, value) else (missing_left if not member(known, value) else False)
    return directions


class Explainer:
    """Reasons' effects for a model, its typical values and its reasons: per reason and tree that splits on the
    reason's features, the change of the tree's answer when those splits decide as for the typical values."""

    def __init__(self, trees: Trees, typical: np.ndarray, groups: list[Reason]):
        self.trees, self.groups = trees, groups
        fixed = trees.codes(typical[:, None])[:, 0]
        tables = np.arange(trees.values.shape[1])
        self.touched, self.changes = [], []
        for group in groups:
            in_group = np.isin(trees.column, group.members).reshape(len(trees.values), trees.width)
            mask = (in_group * (1 << np.arange(trees.width))).sum(axis=1)
            touched = np.flatnonzero(mask)
            undone = (tables[None, :] & ~mask[touched, None]) | (fixed[touched, None] & mask[touched, None])
            rows = np.arange(len(touched))[:, None]
            change = trees.values[touched] - trees.values[touched][rows, undone]
            self.touched.append(touched)
            # Flat, with each touched tree's table at its own offset, for one lookup per reason.
            self.changes.append((change.ravel(), (np.arange(len(touched)) * len(tables))[:, None]))

    def effects(self, matrix: np.ndarray) -> np.ndarray:
        """Log-odds change per row and per reason from setting all of the reason's features to their typical values."""
        return self.logit_and_effects(matrix)[1]

    def logit_and_effects(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's log-odds per row (as ``Trees.logit``) and :meth:`effects`, from one pass of the rows through
        the trees' splits."""
        logit = np.empty(len(matrix))
        result = np.zeros((len(matrix), len(self.groups)))
        trees = np.arange(len(self.trees.values))[:, None]
        for start in range(0, len(matrix), CHUNK_ROWS):
            codes = self.trees.codes(np.ascontiguousarray(matrix[start:start + CHUNK_ROWS].T))
            logit[start:start + CHUNK_ROWS] = self.trees.baseline + self.trees.values[trees, codes].sum(axis=0)
            for position, (touched, (change, offsets)) in enumerate(zip(self.touched, self.changes)):
                if len(touched):
                    result[start:start + CHUNK_ROWS, position] = change[offsets + codes[touched]].sum(axis=0)
        return logit, result


def effects(trees: Trees, matrix: np.ndarray, typical: np.ndarray, groups: list[Reason]) -> np.ndarray:
    """Log-odds change per row and per reason from setting all of the reason's features to their typical values."""
    return Explainer(trees, typical, groups).effects(matrix)


def screening_rows(rows: int, seed: int) -> np.ndarray:
    """The positions of the profiles that screening looks at, whichever engine holds the matrix."""
    return np.random.default_rng(seed).choice(rows, min(SCREENING_ROWS, rows), replace=False)


def screen(trees: Trees, matrix: np.ndarray, typical: np.ndarray, groups: list[Reason], seed: int) -> list[Reason]:
    """The reasons worth explaining, strongest first (mean absolute effect on a sample of profiles), each with the
    features that can name it."""
    return screen_sample(trees, matrix[screening_rows(len(matrix), seed)], typical, groups)


def screen_sample(trees: Trees, sample: np.ndarray, typical: np.ndarray, groups: list[Reason]) -> list[Reason]:
    """:func:`screen` on the sampled rows themselves, in the order :func:`screening_rows` drew them."""
    strength = np.abs(effects(trees, sample, typical, groups)).mean(axis=0)
    scores = trees.leaf_sum(sample)
    return [replace(groups[i], namers=_namers(groups[i], sample, scores, trees.categorical))
            for i in np.argsort(-strength) if strength[i] > 0]


def _namers(group: Reason, sample: np.ndarray, scores: np.ndarray, categorical: set[int]) -> tuple[Namer, ...]:
    """The reason's features with the way each goes with the score in the sample (rank correlation for values,
    mean score for a missing value against a present one), the headline first and then the most telling."""
    namers, association = [], []
    for column in group.members:
        values = sample[:, column]
        present = ~np.isnan(values)
        correlation = _rank_correlation(values[present], scores[present])
        missing = np.sign(scores[~present].mean() - scores[present].mean()) if 0 < present.sum() < len(values) else 0
        namers.append(Namer(column, int(np.sign(correlation)), int(missing), column in categorical))
        association.append(-1.0 if column == group.headline else -abs(correlation))
    return tuple(namers[i] for i in np.argsort(association, kind="stable"))


def _rank_correlation(values: np.ndarray, scores: np.ndarray) -> float:
    """Spearman's correlation, 0 when either side is constant."""
    ranks = [pd.Series(side).rank().to_numpy() for side in (values, scores)]
    if len(values) < 3 or min(side.std() for side in ranks) == 0:
        return 0.0
    return float(np.corrcoef(*ranks)[0, 1])


def naming_columns(group: Reason, matrix: np.ndarray, typical: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """Per row the column that names the reason without contradicting its effect, or -1 when none can (or the
    reason has no effect there)."""
    named = np.full(len(matrix), -1)
    if not group.namers:
        named[np.abs(effect) > NO_EFFECT] = group.headline
        return named
    unnamed = np.flatnonzero(np.abs(effect) > NO_EFFECT)
    for namer in group.namers:
        agrees = namer.agrees(matrix[unnamed, namer.column], typical[namer.column], np.sign(effect[unnamed]))
        named[unnamed[agrees]] = namer.column
        unnamed = unnamed[~agrees]
        if not len(unnamed):
            break
    return named


def top_factors(profile_ids: np.ndarray, matrix: np.ndarray, typical: np.ndarray, groups: list[Reason],
                effect_matrix: np.ndarray, names: list[str]) -> pd.DataFrame:
    """The strongest ``TOP_PER_PROFILE`` reasons of each profile that have an effect and a feature to name them
    without contradiction (a profile none of whose reasons has one keeps its strongest, named by the headline), in
    long form, each with the naming feature's value and typical value."""
    if not groups:
        return pd.DataFrame(columns=["profile_id", "rank", "feature", "value", "typical", "effect", "importance"])
    size = np.abs(effect_matrix)
    named = np.column_stack([naming_columns(group, matrix, typical, effect_matrix[:, position])
                             for position, group in enumerate(groups)])
    shown = named >= 0
    strongest = np.argmax(size, axis=1)
    alone = np.flatnonzero(~shown.any(axis=1) & (size[np.arange(len(size)), strongest] > NO_EFFECT))
    shown[alone, strongest[alone]] = True
    named[alone, strongest[alone]] = np.array([group.headline for group in groups])[strongest[alone]]
    k = min(TOP_PER_PROFILE, len(groups))
    order = np.argsort(-np.where(shown, size, -1.0), axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(len(matrix)), k)
    picked = order.ravel()
    kept = shown[rows, picked]
    rows, picked = rows[kept], picked[kept]
    rank = np.tile(np.arange(1, k + 1), len(matrix))[kept]
    column = named[rows, picked]
    effect = effect_matrix[rows, picked]
    level = (np.abs(effect) >= MEDIUM_EFFECT).astype(np.int8) + (np.abs(effect) >= HIGH_EFFECT)
    return pd.DataFrame({
        "profile_id": profile_ids[rows],
        "rank": rank,
        # Categorical: a million profiles' feature names as strings would take longer than finding the reasons.
        "feature": pd.Categorical.from_codes(column, categories=names),
        "value": matrix[rows, column],
        "typical": typical[column],
        "effect": effect,
        "importance": pd.Categorical.from_codes(level, categories=IMPORTANCE_LEVELS),
    })


def bucket_distributions(values: np.ndarray, in_bucket: dict[str, np.ndarray], categorical: bool,
                         categories: list[str] | None) -> dict:
    """Per bucket (``in_bucket`` holds each bucket's rows as a mask): quartiles for a numeric factor, or the share of
    each category for a categorical one."""
    result = {}
    names = np.array([*(categories or []), "(none)"], dtype=object)
    for name, mask in in_bucket.items():
        subset = values[mask]
        if categorical:
            codes = np.where(np.isnan(subset), len(names) - 1, subset).astype(np.int64)
            decoded = pd.Series(names[codes], dtype=object)
            shares = decoded.value_counts(normalize=True).head(8)
            result[name] = {"shares": {str(k): float(v) for k, v in shares.items()}, "profiles": int(len(subset))}
        else:
            present = subset[~np.isnan(subset)]
            quartiles = np.quantile(present, [0.25, 0.5, 0.75]) if len(present) else [None] * 3
            p25, median, p75 = (None if q is None else float(q) for q in quartiles)
            result[name] = {
                "profiles": int(len(subset)),
                "missing_share": float(1 - len(present) / len(subset)) if len(subset) else None,
                "median": median, "p25": p25, "p75": p75,
                "mean": float(present.mean()) if len(present) else None,
            }
    return result
