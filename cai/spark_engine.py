"""The Spark engine: a run's heavy stages (features for every snapshot, scoring and per-profile factors) on a Spark
cluster or in local mode, from the one feature definition in ``cai.features`` transpiled from DuckDB SQL."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow.dataset
import pyarrow.parquet
import sqlglot
from sqlglot import exp

from cai import engine, factors, features, store
from cai.errors import CaiError
from cai.instances import Definition

EVENT_COLUMNS = ("profile_id", "ts", "event_type", "value", "sku", "channel")
PROFILE_COLUMNS = ("profile_id", "loyalty_tier", "loyalty_points", "birth_year", "gender", "country", "city")
CONNECT_TIMEOUT_S = 5.0
SPARK_LOG = Path(tempfile.gettempdir()) / f"cai-spark-{os.getuid()}.log"


# PySpark 4.3 warns on every conversion that it "does not yet fully support pandas >= 3". What crosses the
# boundary here (64-bit ints and floats, bools, Arrow strings with missing values, dates, lists of floats) converts
# exactly both ways; tests/test_spark_engine.py checks each of those, so the warning is silenced for them.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)


class SparkUnavailable(CaiError):
    """Spark cannot run here, for a reason the user can fix (say which)."""


def _to_spark(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.TimeToUnix):
        # DuckDB's epoch() keeps microseconds; Spark's unix_timestamp() would drop them.
        micros = exp.Anonymous(this="UNIX_MICROS", expressions=[exp.cast(node.this.copy(), "TIMESTAMP")])
        return exp.Div(this=micros, expression=exp.Literal.number("1000000.0"))
    if isinstance(node, exp.Literal) and node.is_number and "." in node.name:
        # DuckDB computes with a literal like 3.0 in double precision; Spark would keep exact decimals.
        return exp.cast(node.copy(), "DOUBLE")
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Explode):
        # Spark refuses a generator inside an expression: cast the array's elements instead.
        elements = exp.DataType(this=exp.DataType.Type.ARRAY, expressions=[node.to.copy()], nested=True)
        return exp.Explode(this=exp.cast(node.this.this.copy(), elements))
    if isinstance(node, exp.CTE):
        # DuckDB's materialisation hint; Spark has no such syntax and plans shared expressions itself.
        node.set("materialized", None)
    if isinstance(node, exp.ToDays):
        return exp.Anonymous(this="MAKE_DT_INTERVAL", expressions=[node.this.copy()])
    if isinstance(node, exp.Mod) and isinstance(node.this, exp.Anonymous) and node.this.name.upper() == "HASH":
        # The stable profile sample: Spark's hash() can be negative, so take a non-negative remainder of a 64-bit
        # hash. It picks other profiles than DuckDB's hash() does, at the same rate.
        hashed = exp.Anonymous(this="XXHASH64", expressions=[e.copy() for e in node.this.expressions])
        return exp.Anonymous(this="PMOD", expressions=[hashed, node.expression.copy()])
    return node


def _expand_star_except(tree: exp.Expression) -> None:
    """``a.* EXCLUDE (x)`` becomes the named columns of the CTE that ``a`` stands for: Spark has no such star."""
    ctes = {cte.alias_or_name: cte.this for cte in tree.find_all(exp.CTE)}
    for select in tree.find_all(exp.Select):
        sources = {table.alias_or_name: table.name for table in select.find_all(exp.Table)}
        projections = []
        for projection in select.expressions:
            star = projection if isinstance(projection, exp.Column) and projection.is_star else None
            excluded = star.this.args.get("except_") if star is not None and isinstance(star.this, exp.Star) else None
            if not excluded:
                projections.append(projection)
                continue
            table = star.table
            names = [column.alias_or_name for column in ctes[sources[table]].expressions]
            skip = {column.name for column in excluded}
            projections += [exp.column(name, table=table) for name in names if name not in skip]
        select.set("expressions", projections)


def spark_sql(duckdb_sql: str) -> str:
    """Spark SQL for a DuckDB query of ``cai.features``: sqlglot's transpilation plus the few functions whose
    meaning differs (epoch with microseconds, day intervals, the sampling hash) and the excluding star."""
    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")
    _expand_star_except(tree)
    return tree.transform(_to_spark).sql(dialect="spark")


def _check_reachable(url: str, default_port: int) -> None:
    """A master or Spark Connect server that does not answer would otherwise leave Spark retrying for minutes."""
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or default_port
    if not host:
        return
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise SparkUnavailable(f"Cannot reach Spark at {url} ({error.strerror or error}): check the address, that "
                               "the cluster is up, and that this machine may connect to it.") from None


def _java_found() -> bool:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        return (Path(java_home) / "bin" / "java").is_file()
    return shutil.which("java") is not None


def start_session(master: str | None = None):
    """A Spark session: Spark Connect when ``SPARK_REMOTE`` is set, else ``master``, else Spark's own
    ``spark.master`` setting, else local mode on every core. Every reason it cannot start is a SparkUnavailable
    that says what to do."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable("PySpark is not installed: pip install pyspark==4.3.0 (see requirements.txt), "
                               "or run with --engine duckdb.") from None
    remote = os.environ.get("SPARK_REMOTE")
    if remote:
        _check_reachable(remote, 15002)
        builder = SparkSession.builder.remote(remote)
    else:
        if not _java_found():
            raise SparkUnavailable("Spark needs Java 17 or newer and none was found: install it (Debian: apt-get "
                                   "install openjdk-17-jre-headless) or set JAVA_HOME, or run with --engine duckdb.")
        if master and master.startswith("spark://"):
            _check_reachable(master, 7077)
        # Executors in local mode (and on a cluster without its own setting) run this very interpreter, so that
        # the model they unpickle meets the same Python, pandas and scikit-learn.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        builder = (SparkSession.builder.appName("customer-ai")
                   .config("spark.sql.session.timeZone", "UTC")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.ui.showConsoleProgress", "false"))
        if master:
            builder = builder.master(master)
    try:
        if remote:
            spark = builder.getOrCreate()
        else:
            with _java_output_to(SPARK_LOG):
                spark = builder.getOrCreate()
    except Exception as error:
        raise SparkUnavailable(f"Spark did not start: {_first_line(error)} (Spark's log: {SPARK_LOG})") from None
    if not remote:
        _fit_local_mode(spark)
    _check_worker_python(spark)
    return spark


@contextmanager
def _java_output_to(log: Path):
    """The JVM that PySpark launches inherits this process's stderr for its whole life: pointing that at a log file
    while it starts keeps Spark's warnings and Java stack traces (a failed task logs one) off the user's terminal,
    where only our one-line messages belong."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log, "ab") as handle:
        os.dup2(handle.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _fit_local_mode(spark) -> None:
    """Spark's default of 200 shuffle partitions costs more in task overhead than one machine gains from them; a
    few per core is enough. A cluster keeps its own setting."""
    master = spark.sparkContext.master
    if master.startswith("local"):
        spark.conf.set("spark.sql.shuffle.partitions", str(4 * spark.sparkContext.defaultParallelism))


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _worker_python(batches):
    for _ in batches:
        yield pd.DataFrame({"version": [f"{sys.version_info.major}.{sys.version_info.minor}"]})


def _check_worker_python(spark) -> None:
    """Scoring unpickles the model on the executors: their Python must be the driver's."""
    driver = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        versions = {row.version for row in spark.range(1).mapInPandas(_worker_python, "version string").collect()}
    except Exception as error:
        message = str(error)
        if "PYTHON_VERSION_MISMATCH" in message or "different minor versions" in message:
            raise SparkUnavailable(f"The cluster's Python differs from this one ({driver}): set PYSPARK_PYTHON to a "
                                   f"Python {driver} on every worker.") from None
        raise SparkUnavailable(f"Spark's Python workers did not start: {_first_line(error)} (Spark's log: "
                               f"{SPARK_LOG})") from None
    if versions != {driver}:
        raise SparkUnavailable(f"The cluster runs Python {', '.join(sorted(versions))} and this machine {driver}: set "
                               f"PYSPARK_PYTHON to a Python {driver} on every worker.")


def check_events(frame, where: str) -> None:
    missing = [column for column in EVENT_COLUMNS if column not in frame.columns]
    if missing:
        raise SparkUnavailable(f"The events at {where} lack the column{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(missing)}; they need {', '.join(EVENT_COLUMNS)} (python -m cai "
                               "export-events writes such a table).")


def export_events(db_path: Path, out: Path) -> int:
    """The store's stitched events (with ``profile_id``) as Parquet partitioned by month, for Spark."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CaiError(f"{out} is not empty: choose a new folder for the events.")
    with store.connect(db_path) as con:
        count = con.execute("SELECT count(*) FROM events").fetchall()[0][0]
        batches = con.execute("SELECT *, strftime(ts, '%Y-%m') AS event_month FROM events").fetch_record_batch()
        pyarrow.dataset.write_dataset(batches, out, format="parquet", partitioning=["event_month"],
                                      partitioning_flavor="hive", existing_data_behavior="overwrite_or_ignore")
    return count


def _export_profiles(db_path: Path, folder: Path) -> None:
    """The profiles and their dated attribute values, as the feature query reads them."""
    with store.connect(db_path) as con:
        for name, sql in (("profiles", f"SELECT {', '.join(PROFILE_COLUMNS)} FROM profiles"),
                          ("profile_attribute_versions", "SELECT profile_id, attribute, valid_from, value "
                                                         "FROM profile_attribute_versions")):
            pyarrow.parquet.write_table(con.execute(sql).fetch_arrow_table(), folder / f"{name}.parquet")


def _read_events(spark, path: str):
    if (Path(path) / "_delta_log").is_dir():
        return spark.read.format("delta").load(path)
    if "://" not in path and not Path(path).exists():
        if "." in path and "/" not in path:
            return spark.table(path)
        raise SparkUnavailable(f"There is no events table at {path}.")
    return spark.read.parquet(path)


def _spark_args(params: dict) -> dict:
    return {name: list(value) if isinstance(value, (list, tuple)) else value for name, value in params.items()}


def _with_snapshot_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Spark's dates as the DuckDB engine's frames hold them."""
    frame["snapshot"] = pd.to_datetime(frame["snapshot"]).astype("datetime64[us]")
    return frame


SCORED_SCHEMA = ("profile_id long, raw double, `values` array<double>, effects array<double>, "
                 "rank array<int>, feature array<string>, value array<double>, typical array<double>, "
                 "effect array<double>, importance array<string>")
FACTOR_FIELDS = ("rank", "feature", "value", "typical", "effect", "importance")


def _scorer(model, typical: np.ndarray, groups: list[factors.Reason]):
    """The function each executor runs over its batches of feature rows: the DuckDB engine's scoring and factor
    code, applied to a slice of profiles at a time (every step is per profile, given the typical values)."""
    explainer = factors.Explainer(model.trees, typical, groups)

    def score(batches):
        for batch in batches:
            matrix = engine.encode(batch, model)
            raw, effect_matrix = explainer.logit_and_effects(matrix)
            profile_ids = batch["profile_id"].to_numpy(dtype=np.int64)
            top = factors.top_factors(profile_ids, matrix, typical, groups, effect_matrix, model.feature_names)
            per_profile = top.groupby("profile_id", sort=False)[list(FACTOR_FIELDS)].agg(list).reindex(profile_ids)
            empty = [[] for _ in range(len(profile_ids))]
            yield pd.DataFrame({
                "profile_id": profile_ids, "raw": raw,
                "values": list(matrix[:, [group.headline for group in groups]]),
                "effects": list(effect_matrix),
                **{field: [v if isinstance(v, list) else [] for v in per_profile[field]] if len(top) else empty
                   for field in FACTOR_FIELDS},
            })

    return score


class SparkExecutor:
    """Features, scoring and per-profile factors of a run as Spark jobs over an events table."""

    name = "spark"

    def __init__(self, spark, db_path: Path, events: str | None = None, workdir: str | None = None):
        self.spark = spark
        self._folder = tempfile.TemporaryDirectory(prefix="cai-spark-", dir=workdir)
        folder = Path(self._folder.name)
        if events is None:
            events = str(folder / "events")
            export_events(db_path, Path(events))
        table = _read_events(spark, events)
        check_events(table, events)
        table.select(*EVENT_COLUMNS).createOrReplaceTempView("events")
        _export_profiles(db_path, folder)
        for name in ("profiles", "profile_attribute_versions"):
            spark.read.parquet(str(folder / f"{name}.parquet")).createOrReplaceTempView(name)

    def close(self) -> None:
        self._folder.cleanup()

    def frame(self, definition: Definition, snapshots: list[dt.date], with_labels: bool,
              sample_fraction: float = 1.0, rows: pd.DataFrame | None = None):
        """The features as a Spark DataFrame, from the DuckDB definition transpiled; with ``rows`` (columns
        ``snapshot``, ``profile_id``) only those rows."""
        sql, params = features.query(definition, snapshots, with_labels, sample_fraction, chosen_rows=rows is not None)
        if rows is not None:
            chosen = pd.DataFrame({"snapshot": pd.to_datetime(rows["snapshot"]).dt.date,
                                   "profile_id": rows["profile_id"].to_numpy(dtype=np.int64)})
            self.spark.createDataFrame(chosen).createOrReplaceTempView(features.CHOSEN_ROWS)
        return self.spark.sql(spark_sql(sql), args=_spark_args(params))

    def sampled(self, sample_fraction: float) -> nullcontext:
        """This executor: Spark reads the sample from its events each time (see ``engine.DuckDBExecutor.sampled``)."""
        return nullcontext(self)

    def labels(self, definition: Definition, snapshots: list[dt.date], sample_fraction: float = 1.0) -> pd.DataFrame:
        sql, params = features.labels_query(definition, snapshots, sample_fraction)
        return _with_snapshot_dates(self.spark.sql(spark_sql(sql), args=_spark_args(params)).toPandas())

    def features(self, definition: Definition, snapshots: list[dt.date], with_labels: bool,
                 sample_fraction: float = 1.0, rows: pd.DataFrame | None = None) -> pd.DataFrame:
        frame = _with_snapshot_dates(self.frame(definition, snapshots, with_labels, sample_fraction, rows).toPandas())
        return frame[features.columns(definition, with_labels)]

    def score(self, definition: Definition, as_of: dt.date, model, timings: dict) -> engine.Scored | None:
        clock = time.monotonic()
        frame = self.frame(definition, [as_of], with_labels=False).persist()
        try:
            count = frame.count()
            timings["scoring_features_s"] = time.monotonic() - clock
            if count == 0:
                return None
            clock = time.monotonic()
            typical = _typical_values(frame, model, count)
            groups = self._screen(frame, model, typical, count)
            folder = Path(self._folder.name) / f"scored-{as_of.isoformat()}-{time.monotonic_ns()}"
            scored = frame.mapInPandas(_scorer(model, typical, groups), SCORED_SCHEMA).persist()
            scored.select("profile_id", "raw", "values", "effects").write.parquet(str(folder / "scores"))
            scored.selectExpr("profile_id", f"inline(arrays_zip({', '.join(FACTOR_FIELDS)}))") \
                .write.parquet(str(folder / "factors"))
            scored.unpersist()
            timings["score_s"] = time.monotonic() - clock
        finally:
            frame.unpersist()
        clock = time.monotonic()
        result = _read_scored(folder, typical, groups)
        timings["factors_s"] = time.monotonic() - clock
        return result

    def _screen(self, frame, model, typical: np.ndarray, count: int) -> list[factors.Reason]:
        """Screening on the very profiles the DuckDB engine screens: the same positions in profile order."""
        from pyspark.sql import functions as F

        profile_ids = frame.select("profile_id").orderBy("profile_id").toPandas()["profile_id"].to_numpy()
        wanted = profile_ids[factors.screening_rows(count, engine.SEED)]
        sample = frame.where(F.col("profile_id").isin(wanted.tolist())).toPandas().set_index("profile_id")
        sample = sample.loc[wanted].reset_index()
        return factors.screen_sample(model.trees, engine.encode(sample, model), typical,
                                     factors.reasons(model.feature_names))


def _typical_values(frame, model, count: int) -> np.ndarray:
    """``factors.typical_values`` computed by Spark: exact medians, and most common known categories."""
    from pyspark.sql import functions as F

    typical = np.full(len(model.feature_names), np.nan)
    numeric = [(i, name) for i, (name, categorical) in enumerate(zip(model.feature_names, model.categorical))
               if not categorical]
    aggregates = [F.count(name).alias(f"n{i}") for i, name in numeric]
    aggregates += [F.percentile(name, 0.5).alias(f"m{i}") for i, name in numeric]
    row = frame.agg(*aggregates).collect()[0] if numeric else None
    for i, _ in numeric:
        present = row[f"n{i}"]
        if present and present * 2 >= count:
            typical[i] = float(row[f"m{i}"])
    for i, name in enumerate(model.feature_names):
        if not model.categorical[i]:
            continue
        codes = {value: code for code, value in enumerate(model.categories[name])}
        counts = {codes[value]: n for value, n in frame.groupBy(name).count().collect() if value in codes}
        if counts and sum(counts.values()) * 2 >= count:
            typical[i] = float(min(counts, key=lambda code: (-counts[code], code)))
    return typical


def _read_scored(folder: Path, typical: np.ndarray, groups: list[factors.Reason]) -> engine.Scored:
    scored = pd.read_parquet(folder / "scores").sort_values("profile_id", kind="stable")
    per_profile = pd.read_parquet(folder / "factors").sort_values(["profile_id", "rank"], kind="stable")
    width = len(groups)

    def stacked(series: pd.Series) -> np.ndarray:
        return np.vstack(series.to_numpy()) if len(series) and width else np.empty((len(series), width))

    per_profile["rank"] = per_profile["rank"].astype(np.int64)
    return engine.Scored(
        profile_ids=scored["profile_id"].to_numpy(dtype=np.int64), raw=scored["raw"].to_numpy(dtype=float),
        typical=typical, groups=groups, values=stacked(scored["values"]), effects=stacked(scored["effects"]),
        per_profile=per_profile.reset_index(drop=True)[["profile_id", *FACTOR_FIELDS]],
    )


def executor(db_path: Path, master: str | None = None, events: str | None = None,
             workdir: str | None = None) -> SparkExecutor:
    """The Spark executor for a run from the command line: a session, and the events (the store's own unless
    ``events`` names a table). On a cluster, ``workdir`` must be a folder the driver and every executor see."""
    return SparkExecutor(start_session(master), db_path, events, workdir)
