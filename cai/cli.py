"""The command line: `python -m cai --db PATH <command>` runs the app's jobs without a browser."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import math
import sys
from pathlib import Path

import pandas as pd

from cai import (backtest, demo, engine, ingest, instances, online_retail, performance, profiles, scores,
                 segments, spark_engine, store)
from cai import activation, destinations, privacy
from cai.errors import CaiError, ValidationError
from cai.instances import Condition, Definition, Goal


# What the audit log records for the command line's changes: the operating-system account that ran it.
ACTOR = f"cli:{getpass.getuser()}"


class _Parser(argparse.ArgumentParser):
    """A mistake on the command line is one line and exit code 2, not a usage screen."""

    def error(self, message: str) -> None:
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(2)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-10-15") from None


def _whole_number(text: str) -> int:
    try:
        return int(text.strip().replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value


def _print_json(value) -> None:
    print(privacy.terminal_json(json.dumps(value, indent=2, default=str, ensure_ascii=False)))


def _progress(fraction: float, message: str) -> None:
    print(f"[{fraction:4.0%}] {message}", file=sys.stderr, flush=True)


def cmd_demo(args) -> int:
    summary = demo.build_demo(args.db, profiles=args.profiles, seed=args.seed)
    instances.ensure_tutorial_instance(args.db)
    print(f"Built the demo: {summary.profiles:,} profiles, {summary.events:,} events from "
          f"{summary.first_event:%Y-%m-%d} to {summary.last_event:%Y-%m-%d} in {args.db}.")
    if args.train:
        return _report_run(engine.run_instance(args.db, instances.TUTORIAL_INSTANCE, progress=_progress, actor=ACTOR), False)
    return 0


def cmd_ingest(args) -> int:
    try:
        if args.online_retail:
            report = online_retail.load(args.db, Path(args.file), max_customers=args.max_customers, actor=ACTOR)
        else:
            report = ingest.ingest_file(args.db, Path(args.file), kind=args.kind, dataset=args.dataset, actor=ACTOR)
    except ValidationError as error:
        print(str(error), file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"Loaded {report.file_name} into {report.dataset!r}: {report.rows_accepted:,} of {report.rows_total:,} "
          f"rows accepted, {report.rows_duplicate:,} duplicates skipped, {report.profiles_created:,} new profiles, "
          f"{report.profiles_merged:,} profiles merged.")
    return 0


def cmd_datasets(args) -> int:
    engine.recover_interrupted_runs(args.db)  # a load whose process is gone is listed as interrupted
    overview = ingest.datasets_overview(args.db)
    summary = ingest.store_summary(args.db)
    unfinished = ingest.unfinished_loads(args.db)
    if args.json:
        _print_json({"datasets": overview.to_dict("records"), "store": summary,
                     "unfinished_loads": unfinished.to_dict("records")})
    else:
        print(overview.to_string(index=False))
        for load in unfinished.itertuples():
            outcome = "still loading" if load.status == ingest.LOADING else load.error
            print(f"{load.file_name} into {load.dataset!r}, started {load.started_at:%Y-%m-%d %H:%M} by "
                  f"{load.actor}: {outcome}")
        print(f"\n{summary['profiles']:,} profiles, {summary['events']:,} events, {summary['first_event']} to "
              f"{summary['last_event']} ({summary['days_covered']} days).")
    return 0


def _definition_from_args(args) -> Definition:
    condition = None
    if args.goal_field:
        condition = Condition(args.goal_field, args.goal_op, args.goal_value)
    population = None
    if args.population_attribute:
        population = Condition(args.population_attribute, args.population_op, args.population_value)
    return Definition(
        name=args.name, description=args.description or "", propensity_type=args.type,
        goals=tuple(Goal(event_type, condition) for event_type in args.goal),
        goal_mode=args.goal_mode, will_occur=not args.will_not_occur, window_days=args.window_days,
        eligible_days=args.eligible_days, population_event_type=args.population_event,
        population_attribute=population, custom_events=tuple(args.custom_event or ()),
        profile_attributes=tuple(args.profile_attribute or ()),
        allow_leaky_attributes=tuple(args.allow_leaky_attribute or ()), schedule=args.schedule,
        low_threshold=args.low, high_threshold=args.high, min_examples=args.min_examples,
    )


def cmd_instances(args) -> int:
    if args.action == "list":
        table = instances.instances_table(args.db)
        if args.json:
            _print_json(table.to_dict("records"))
        else:
            print(table.to_string(index=False) if len(table) else "No instances yet.")
    elif args.action == "show":
        run = scores.latest_run(args.db, args.name)
        _print_json({"name": args.name, "status": run["status"], "reason": run["status_reason"],
                     "definition": json.loads(run["definition"].to_json()), "goal": run["definition"].goal_text(),
                     "last_run": {"run_id": run["run_id"], "as_of": run["as_of"], "metrics": run["metrics"],
                                  "buckets": run["buckets"]},
                     "history": instances.run_history(args.db, args.name).to_dict("records")})
    elif args.action == "create":
        instance = instances.create_instance(args.db, _definition_from_args(args), actor=ACTOR)
        print(f"Created {instance.name!r} ({instance.status}): {instance.definition.goal_text()}.")
    elif args.action == "clone":
        instance = instances.clone_instance(args.db, args.name, args.new_name, actor=ACTOR)
        print(f"Cloned {args.name!r} as {instance.name!r}.")
    elif args.action == "delete":
        instances.delete_instance(args.db, args.name, actor=ACTOR)
        print(f"Deleted {args.name!r} with its runs, scores and segments.")
    return 0


def cmd_backtest(args) -> int:
    results = backtest.backtest(args.db, args.name, backtest.monthly_cutoffs(args.first, args.last), seeds=args.seeds)
    summary = backtest.summary(results)
    if args.json:
        _print_json({"cutoffs": [r.as_dict() for r in results], "mean": summary})
        return 0
    print(f"{'cutoff':<12}{'seed':>9}{'customers':>10}{'actual':>8}{'expected':>9}{'error':>8}{'ROC AUC':>9}"
          f"{'avg prec':>10}{'lift@10%':>10}{'season':>8}")
    for r in results:
        season = "" if r.season_move is None else f"{r.season_move:+.0%}"
        print(f"{r.cutoff:<12}{r.seed:>9}{r.customers:>10,}{r.base_rate:>8.3f}{r.expected_rate:>9.3f}"
              f"{r.calibration_error:>+8.1%}{r.auc:>9.3f}{r.average_precision:>10.3f}{r.lift_top_decile:>10.2f}"
              f"{season:>8}")
    spread = summary["spread"]
    print(f"{'mean':<12}{'':>9}{summary['customers']:>10,.0f}{summary['base_rate']:>8.3f}"
          f"{summary['expected_rate']:>9.3f}{summary['calibration_error']:>+8.1%}{summary['auc']:>9.3f}"
          f"{summary['average_precision']:>10.3f}{summary['lift_top_decile']:>10.2f}")
    print(f"{'± over seeds':<12}{'':>36}{spread['calibration_error']:>8.1%}{spread['auc']:>9.3f}"
          f"{spread['average_precision']:>10.3f}{spread['lift_top_decile']:>10.2f}")
    print(f"Worst forward calibration error: {summary['worst_calibration_error']:+.1%} "
          f"(cutoff {summary['worst_calibration_cutoff']}).")
    if summary["season_carried"]:
        print(f"Last year's move over the same weeks was carried into the probabilities at {summary['season_carried']} "
              "cutoffs and seeds (column season).")
    if summary["with_likely_range"]:
        print(f"Actual rate within the likely range a run states: {summary['within_likely_range']} of "
              f"{summary['with_likely_range']} cutoffs and seeds.")
    return 0


def cmd_runs(args) -> int:
    summary = performance.performance_summary(args.db, args.name)
    if args.json:
        # A run made before likely ranges were measured has none: null, not NaN, which is not JSON.
        _print_json(summary.astype(object).where(summary.notna(), None).to_dict("records"))
        return 0
    if summary.empty:
        print("No past run's outcome window has ended yet.")
    print(f"{'run':>5} {'as of':<12}{'bucket':<8}{'profiles':>9}{'predicted':>10}{'likely':>14}{'actual':>8}")
    for row in summary.itertuples():
        likely = f"{row.likely_low:,.0f}-{row.likely_high:,.0f}" if pd.notna(row.likely_low) else "-"
        print(f"{row.run_id:>5} {str(row.as_of):<12}{row.bucket:<8}{row.profiles:>9,}{row.predicted:>10.1f}"
              f"{likely:>14}{row.actual:>8,}")
    return 0


def _report_run(result: engine.RunResult, as_json: bool) -> int:
    if as_json:
        _print_json(result.as_dict())
    elif result.error:
        print(f"{result.instance}: {result.status}. {result.error}", file=sys.stderr)
    else:
        metrics = result.metrics
        print(f"{result.instance}: {result.status} as of {result.as_of} in {result.duration_s:.1f} s. "
              f"{result.profiles_scored:,} profiles scored (high {result.buckets['high']:,}, medium "
              f"{result.buckets['medium']:,}, low {result.buckets['low']:,}); AUC {metrics['auc']:.3f}, average "
              f"precision {metrics['average_precision']:.3f}, top-decile lift {metrics['lift_top_decile']:.2f} "
              f"({metrics['grade']}).")
    return 0 if result.error is None else 1


def _executor(args):
    """None (the store's DuckDB) or, with ``--engine spark``, the Spark executor."""
    if args.engine != "spark":
        return None
    return spark_engine.executor(args.db, master=args.master, events=args.events, workdir=args.spark_workdir)


def cmd_run(args) -> int:
    engine.recover_interrupted_runs(args.db)
    executor = _executor(args)
    try:
        return _report_run(engine.run_instance(args.db, args.name, as_of=args.as_of, actor=ACTOR, executor=executor,
                                               progress=None if args.json else _progress), args.json)
    finally:
        if executor:
            executor.close()


def cmd_run_due(args) -> int:
    engine.recover_interrupted_runs(args.db)
    due = instances.due_instances(args.db, dt.date.today())
    if not due:
        print("No instance is due.")
    status = 0
    executor = _executor(args) if due else None
    try:
        for name in due:
            status |= _report_run(engine.run_instance(args.db, name, progress=_progress, actor=ACTOR,
                                                      executor=executor), False)
    finally:
        if executor:
            executor.close()
    return status | _report_deliveries(activation.deliver_pending(args.db, actor=ACTOR))


def cmd_export_events(args) -> int:
    count = spark_engine.export_events(args.db, Path(args.out))
    print(f"Wrote {count:,} events to {args.out} (Parquet, one folder per month).")
    return 0


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                        help="where features, scoring and factors run (default: the store's DuckDB)")
    parser.add_argument("--master", help="with --engine spark: Spark master URL (default: SPARK_REMOTE, else "
                                         "spark.master, else local mode)")
    parser.add_argument("--events", help="with --engine spark: events table (Parquet or Delta folder, or a table "
                                         "name); default: the store's events")
    parser.add_argument("--spark-workdir", help="with --engine spark: folder for the Parquet Spark writes; on a "
                                                "cluster one the driver and executors share (default: a temporary "
                                                "folder)")


def cmd_scores(args) -> int:
    count = scores.export_scores(args.db, args.name, Path(args.out), actor=ACTOR)
    print(f"Wrote {count:,} scored profiles of {args.name!r} to {args.out}.")
    return 0


def cmd_segments(args) -> int:
    if args.action == "list":
        table = segments.list_segments(args.db)
        if args.json:
            _print_json(table.to_dict("records"))
        else:
            print(table.to_string(index=False) if len(table) else "No segments yet.")
    elif args.action == "create":
        rule = segments.Rule(instance=args.instance, field=args.field, minimum=args.min_score,
                             maximum=args.max_score, country=args.country, loyalty_tier=args.loyalty_tier)
        saved = segments.create_segment(args.db, args.name, rule, args.description or "", actor=ACTOR)
        print(f"Saved {saved['name']!r}: {saved['rule_text']} ({saved['size']:,} profiles).")
    elif args.action == "export":
        count = segments.export(args.db, args.name, Path(args.out), actor=ACTOR)
        print(f"Wrote {count:,} members of {args.name!r} to {args.out}.")
    elif args.action == "activate":
        activation.activate(args.db, args.name, args.destination, args.identity,
                            tuple(c for c in args.columns.split(",") if c), actor=ACTOR)
        return _report_deliveries(activation.deliver_pending(args.db, segment=args.name, actor=ACTOR))
    return 0


def _report_deliveries(results: list[activation.DeliveryResult]) -> int:
    for result in results:
        print(result.line(), file=sys.stderr if result.status == activation.FAILED else sys.stdout)
    return 1 if any(result.status == activation.FAILED for result in results) else 0


def cmd_destinations(args) -> int:
    if args.action == "list":
        rows = [{"name": d.name, "kind": d.kind, "target": d.target, "options": d.options}
                for d in destinations.list_destinations(args.db)]
        if args.json:
            _print_json(rows)
        for row in [] if args.json else rows:
            print(f"{row['name']}: {row['kind']} {row['target']}")
        return 0
    kind, target = next((k, getattr(args, k)) for k in destinations.KINDS if getattr(args, k))
    options = {key: value for key, value in (("format", args.format), ("endpoint_url", args.endpoint_url),
                                             ("table", args.table_name), ("batch_size", args.batch_size),
                                             ("timeout_s", args.timeout)) if value is not None}
    created = destinations.create_destination(args.db, destinations.Destination(args.name, kind, target, options),
                                              actor=ACTOR)
    print(f"Created the destination {created.name!r}: {created.describe()}.")
    return 0


def cmd_activations(args) -> int:
    if args.action == "deliver":
        return _report_deliveries(activation.deliver_pending(args.db, segment=args.segment, actor=ACTOR))
    table = activation.list_activations(args.db)
    if args.json:
        _print_json(table.to_dict("records"))
    else:
        print(table.drop(columns="activation_id").to_string(index=False) if len(table) else "No activations yet.")
    return 0


def cmd_profiles(args) -> int:
    profile_id = profiles.find(args.db, args.namespace, args.value)
    if profile_id is None:
        print(f"No profile has the {args.namespace} identity {args.value!r}.", file=sys.stderr)
        return 1
    description = profiles.describe(args.db, profile_id)
    if args.json:
        _print_json(description)
    else:
        print(f"Profile {profile_id}")
        for identity in description["identities"]:
            print(f"  {identity['namespace']}: {identity['identity']}{' (primary)' if identity['primary'] else ''}")
        for output in description["customer_ai"]:
            print(f"  {output['instance']}: score {output['score']}, probability {output['probability']:.3f}, "
                  f"percentile {output['percentile']}, {output['bucket']} ({output['score_date']})")
            for factor in output["factors"]:
                print(f"    - {factor['sentence']}")
    return 0


def cmd_migrate(args) -> int:
    before, after = store.migrate(args.db)
    print(f"{args.db}: schema {after}" + (" (already current)." if before == after else f" (was {before})."))
    return 0


def cmd_copy(args) -> int:
    copied = store.copy(args.source, args.target, replace=args.replace)
    print(f"Copied {sum(copied.values()):,} rows in {len(copied)} tables from {store.resolve(args.source)} to "
          f"{store.resolve(args.target)}.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cai", description="Customer AI: propensity scoring.")
    parser.add_argument("--db", help=f"database file or postgresql:// URL (default: ${store.DB_ENV_VAR} or "
                                     f"{store.DEFAULT_DB_PATH})")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("demo", help="build the seeded demo store and the tutorial's instance")
    p.add_argument("--profiles", type=_whole_number, default=demo.DEFAULT_PROFILES)
    p.add_argument("--seed", type=_whole_number, default=demo.DEFAULT_SEED)
    p.add_argument("--train", action="store_true", help="also run the tutorial's instance")
    p.set_defaults(handler=cmd_demo)

    p = commands.add_parser("ingest", help="load an events or profiles file (XDM JSON, CSV, Parquet, a .zip of "
                                           "export part files) or a folder of export part files, as one batch")
    p.add_argument("file")
    p.add_argument("--kind", choices=["events", "profiles"])
    p.add_argument("--dataset", help="dataset name (default: the file name)")
    p.add_argument("--online-retail", action="store_true",
                   help="the file is the UCI Online Retail log (shared/datasets/online-retail)")
    p.add_argument("--max-customers", type=_whole_number, help="with --online-retail: load only this many customers")
    p.set_defaults(handler=cmd_ingest)

    p = commands.add_parser("datasets", help="datasets, batches and the covered date range")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_datasets)

    p = commands.add_parser("instances", help="list, show, create, clone or delete instances")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list")
    a.add_argument("--json", action="store_true")
    for verb in ("show", "delete"):
        actions.add_parser(verb).add_argument("name")
    a = actions.add_parser("clone")
    a.add_argument("name")
    a.add_argument("--new-name")
    a = actions.add_parser("create")
    a.add_argument("--name", required=True)
    a.add_argument("--goal", action="append", required=True, help="goal event type (repeatable)")
    a.add_argument("--goal-mode", choices=["any", "all"], default="any")
    a.add_argument("--goal-field", choices=sorted(instances.CONDITION_FIELDS))
    a.add_argument("--goal-op", choices=sorted(instances.OPERATORS), default=">")
    a.add_argument("--goal-value")
    a.add_argument("--will-not-occur", action="store_true")
    a.add_argument("--type", choices=instances.PROPENSITY_TYPES, default="conversion")
    a.add_argument("--window-days", type=_whole_number, default=30)
    a.add_argument("--eligible-days", type=_whole_number, default=45)
    a.add_argument("--population-event", help="eligible only if this event type occurred in the lookback")
    a.add_argument("--population-attribute", choices=sorted(instances.PROFILE_CONDITION_FIELDS))
    a.add_argument("--population-op", choices=sorted(instances.OPERATORS), default="=")
    a.add_argument("--population-value")
    a.add_argument("--custom-event", action="append", help="extra event type to turn into features (repeatable)")
    a.add_argument("--profile-attribute", action="append", choices=sorted(instances.PROFILE_CONDITION_FIELDS))
    a.add_argument("--allow-leaky-attribute", action="append", choices=sorted(instances.PROFILE_CONDITION_FIELDS),
                   help="learn from this attribute even if the leakage check refuses it")
    a.add_argument("--description")
    a.add_argument("--schedule", choices=list(instances.SCHEDULES), default="none")
    a.add_argument("--low", type=_whole_number, default=25)
    a.add_argument("--high", type=_whole_number, default=75)
    a.add_argument("--min-examples", type=_whole_number, default=500)
    p.set_defaults(handler=cmd_instances)

    p = commands.add_parser("run", help="train and score an instance")
    p.add_argument("name")
    p.add_argument("--as-of", type=_date, help="score date YYYY-MM-DD (default: the day after the latest event)")
    p.add_argument("--json", action="store_true")
    _add_engine_arguments(p)
    p.set_defaults(handler=cmd_run)

    p = commands.add_parser("backtest", help="train as of each monthly cutoff and measure on the next window")
    p.add_argument("name")
    p.add_argument("--from", dest="first", required=True, type=_date, help="first cutoff month, YYYY-MM-DD")
    p.add_argument("--to", dest="last", required=True, type=_date, help="last cutoff, YYYY-MM-DD")
    p.add_argument("--seeds", type=_whole_number, default=1,
                   help="train with this many seeds to show each figure's spread")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_backtest)

    p = commands.add_parser("runs", help="past runs whose outcome window has passed: predicted vs actual per bucket")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_runs)

    p = commands.add_parser("run-due", help="run every instance whose weekly or monthly schedule is due (for cron)")
    _add_engine_arguments(p)
    p.set_defaults(handler=cmd_run_due)

    p = commands.add_parser("export-events", help="write the stitched events as partitioned Parquet (for Spark)")
    p.add_argument("--out", required=True, help="a new or empty folder")
    p.set_defaults(handler=cmd_export_events)

    p = commands.add_parser("scores", help="export an instance's latest scores")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("export")
    a.add_argument("name")
    a.add_argument("--out", required=True, help="a .csv or .parquet file")
    p.set_defaults(handler=cmd_scores)

    p = commands.add_parser("segments", help="list, create or export segments")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("list")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("create")
    a.add_argument("--instance", required=True)
    a.add_argument("--name", required=True)
    a.add_argument("--field", choices=list(segments.RANGE_FIELDS), default="score")
    a.add_argument("--min-score", type=_number, help="lower bound (inclusive) of the field")
    a.add_argument("--max-score", type=_number, help="upper bound (exclusive) of the field")
    a.add_argument("--country")
    a.add_argument("--loyalty-tier")
    a.add_argument("--description")
    a = actions.add_parser("export")
    a.add_argument("name")
    a.add_argument("--out", required=True, help="a .csv or .parquet file")
    a = actions.add_parser("activate", help="send the segment to a destination now and after every run")
    a.add_argument("name")
    a.add_argument("--destination", required=True)
    a.add_argument("--identity", choices=list(activation.IDENTITIES), default="crmid")
    a.add_argument("--columns", default="score,bucket", help=f"any of {','.join(activation.OPTIONAL_COLUMNS)}")
    p.set_defaults(handler=cmd_segments)

    p = commands.add_parser("destinations", help="where segments are sent (secrets: see the README)")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list").add_argument("--json", action="store_true")
    a = actions.add_parser("create")
    a.add_argument("--name", required=True)
    where = a.add_mutually_exclusive_group(required=True)
    where.add_argument("--folder", help="a local or mounted folder")
    where.add_argument("--s3", help="s3://bucket/prefix")
    where.add_argument("--webhook", help="https://... receiving signed JSON batches")
    where.add_argument("--table", help="postgresql://user@host:5432/database")
    a.add_argument("--format", choices=destinations.FILE_FORMATS, help="files: csv (default) or parquet")
    a.add_argument("--endpoint-url", help="s3: an S3-compatible endpoint")
    a.add_argument("--table-name", help=f"table: the table to fill (default {destinations.DEFAULT_TABLE})")
    a.add_argument("--batch-size", type=int, help="webhook: members per request")
    a.add_argument("--timeout", type=float, help="webhook: seconds to wait for an answer")
    p.set_defaults(handler=cmd_destinations)

    p = commands.add_parser("activations", help="list activations or deliver the pending ones")
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list").add_argument("--json", action="store_true")
    actions.add_parser("deliver").add_argument("--segment")
    p.set_defaults(handler=cmd_activations)

    p = commands.add_parser("profiles", help="find a profile by identity")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("find")
    a.add_argument("namespace", help="Email, ECID, Phone, CRMID, LoyaltyID or 'Profile ID'")
    a.add_argument("value")
    a.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_profiles)

    p = commands.add_parser("migrate", help="set up or upgrade the store's schema (done on every start anyway)")
    p.set_defaults(handler=cmd_migrate)

    p = commands.add_parser("copy", help="copy a whole store between a DuckDB file and PostgreSQL, either way")
    p.add_argument("--from", dest="source", required=True, help="database file or postgresql:// URL")
    p.add_argument("--to", dest="target", required=True, help="database file or postgresql:// URL")
    p.add_argument("--replace", action="store_true", help="replace whatever the target holds")
    p.set_defaults(handler=cmd_copy)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Names and values from files and other people are printed: none of their control characters may steer the
    # terminal (a hidden link, a rewritten screen).
    with (contextlib.redirect_stdout(privacy.TerminalSafe(sys.stdout)),
          contextlib.redirect_stderr(privacy.TerminalSafe(sys.stderr))):
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.db = store.resolve_db_path(args.db)
    try:
        return args.handler(args)
    except CaiError as error:
        print(str(error), file=sys.stderr)
        for problem in getattr(error, "problems", []):
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except OSError as error:
        # A file or folder that cannot be read or written (--out in a missing or read-only place).
        print(f"{error.strerror}: {error.filename}" if error.filename else str(error), file=sys.stderr)
        return 2
