"""The scoring dashboard of one instance: summary, propensity cards, distribution, factors and evaluation."""

import pandas as pd
import streamlit as st

from cai import charts, evaluation, scores
from cai.errors import NotFound
from ui import access, cached, state
from ui.components import plain

db = state.db_path()
viewer = access.current()
table = cached.instances_table(db)
requested = st.query_params.get("instance")
# An unknown name is kept, so that the page says there is no such instance.
name = access.resolve(requested, table["name"]) or requested
if not name:
    succeeded = table[table["last_run_date"].notna()]["name"]
    name = succeeded.iloc[0] if len(succeeded) else None
if name is None:
    st.title("Dashboard")
    st.info("No instance has a successful run yet. Open Customer AI, create or choose an instance, and run it.")
    st.stop()
address = access.reference(viewer, name, table["name"])
if requested != address:
    st.query_params["instance"] = address

try:
    run = cached.latest_run(db, name)
except NotFound as error:
    st.title("Dashboard")
    st.error(plain(error))
    st.stop()
definition = run["definition"]
st.title(plain(name))
st.caption(f"{definition.propensity_type.capitalize()}: {plain(definition.goal_text())}.")
if run["run_id"] is None:
    reason = run["status_reason"] or "It has not been trained yet."
    st.warning(f"This instance is {run['status']}: {plain(reason)} Insights appear once a run succeeds; "
               "open Customer AI and press Run now.")
    st.stop()
if run["status"] != "Success":
    st.info(f"Status now: {run['status']}. {plain(run['status_reason'] or '')} Showing the last successful run.")
if run["profiles_loaded_after"]:
    st.info(f"{run['profiles_loaded_after']:,} profiles were loaded since this run started and have no score yet; "
            "the next run scores those that are eligible.")

summary = cached.bucket_summary(db, run["run_id"])
colors = charts.bucket_colors(definition.propensity_type)
st.subheader("Score summary")
left, right = st.columns([1, 2])
left.metric("Profiles scored", f"{run['profiles_scored']:,}")
left.metric("Score date", f"{run['as_of']:%d %b %Y}")
left.caption("A score of 50 means as likely as the average eligible customer; 75 means three times the odds.")
cached.chart(right, charts.bucket_donut, summary, definition.propensity_type, width="stretch")

cards = st.columns(3)
for card, row in zip(cards, summary.itertuples()):
    with card.container(border=True, key=f"dashboard_card_{row.bucket}"):
        st.markdown(f"<span style='color:{colors[row.bucket]};font-weight:700'>{row.bucket.upper()} PROPENSITY"
                    "</span>", unsafe_allow_html=True)
        st.metric("Profiles", f"{int(row.profiles):,}", f"{row.share:.1%} of scored", delta_color="off",
                  delta_arrow="off")
        likely = (f" (likely {row.expected_low:,.0f}–{row.expected_high:,.0f})"
                  if row.profiles and pd.notna(row.expected_low) else "")
        # Two lines always, so the three cards' buttons line up.
        st.caption(f"Mean probability {row.mean_probability:.1%}  \nExpected conversions "
                   f"{row.expected_conversions:,.0f}{likely}" if row.profiles else "No profiles in this bucket  \n ")
        if st.button("Create Segment", key=f"dashboard_segment_{row.bucket}", disabled=not row.profiles):
            st.switch_page("app_pages/segment_builder.py", query_params={"instance": address, "bucket": row.bucket})

moved = evaluation.forward_range(run["details"])
season = evaluation.year_ago_move(run["details"])
carried = evaluation.carried_move(season)
if moved is not None or carried is not None:
    st.caption(f"Expected conversions are the sum of the probabilities over the next {definition.window_days} days."
               + (f" They carry forward the {carried:+.0%} by which the goal's rate moved over the same weeks last "
                  "year." if carried is not None else "")
               + (f" The likely ranges allow for the goal's rate moving by up to {moved:.0%} from one "
                  f"{definition.window_days}-day window to the next, as it did in the months this run learned from, "
                  "and for chance." if moved is not None else ""))

st.subheader("Distribution of scores")
cached.chart(st, charts.score_histogram, cached.score_distribution(db, run["run_id"]), definition.propensity_type,
             width="stretch")
st.caption("How many customers got each score; hover a bar for the exact count.")


@st.fragment
def influential_factors(run_id: int) -> None:
    """Choosing a factor reruns this section only, not the whole page with its other charts."""
    st.subheader("Influential factors")
    factors = cached.influential_factors(db, run_id).copy()
    factors["breakdown"] = [scores.factor_sentence(row) for row in factors.to_dict("records")]
    factors = access.shown(viewer, factors)
    event = cached.chart(st, charts.factor_bars, factors, width="stretch", on_select="rerun", key="dashboard_factors")
    selected = [point.get("label") for point in (event.selection.get("factor") or [])] if event else []
    labels = factors["label"].tolist()
    focus = st.selectbox("Breakdown of", labels,
                         index=labels.index(selected[0]) if selected and selected[0] in labels else 0,
                         key="dashboard_factor")
    row = factors[factors["label"] == focus].iloc[0]
    st.markdown(f"**{plain(factors.loc[row.name, 'breakdown'])}**  \n{plain(row['description'])}")
    # The sentence above carries the figures; their chart is drawn on request, as the evaluation's are.
    chart_section = st.expander("Chart of this factor in each bucket", on_change="rerun",
                                key="dashboard_breakdown_chart")
    if chart_section.open:
        breakdown = scores.factor_breakdown(factors[factors["label"] == focus])
        cached.chart(chart_section, charts.factor_breakdown, breakdown, row["kind"], definition.propensity_type,
                     width="stretch")


influential_factors(run["run_id"])

st.subheader("Model evaluation")
evaluation = run["evaluation"]
columns = st.columns(4)
columns[0].metric("AUC", f"{evaluation['auc']:.3f}", help="Chance that a converter scores above a non-converter.")
columns[1].metric("Average precision", f"{evaluation['average_precision']:.3f}")
columns[2].metric("Top-decile lift", f"{evaluation['lift_top_decile']:.2f}×")
columns[3].metric("Quality", evaluation["grade"])
if evaluation.get("advice"):
    st.warning(evaluation["advice"])
st.caption(f"Measured on {evaluation['profiles']:,} held-out customers the model never saw, whose outcome is known "
           f"(base rate {evaluation['base_rate']:.1%}).")


@st.fragment
def evaluation_charts(evaluation: dict) -> None:
    """Drawn once opened: four charts below the fold, which the browser would otherwise draw at every visit (each
    costs it as much as eight other elements); opening them reruns this section only."""
    section = st.expander("Lift, gains, calibration and expected vs actual", on_change="rerun",
                          key="dashboard_evaluation_charts")
    if not section.open:
        return
    deciles = pd.DataFrame(evaluation["deciles"])
    left, right = section.columns(2)
    cached.chart(left, charts.lift_chart, deciles, width="stretch")
    left.caption("Lift: how many times more conversions each tenth of customers, ranked by score, has than average.")
    cached.chart(right, charts.gains_chart, deciles, width="stretch")
    right.caption("Gains: the share of all conversions you reach by targeting the top x% of scores.")
    left, right = section.columns(2)
    cached.chart(left, charts.calibration_chart, pd.DataFrame(evaluation["calibration"]), width="stretch")
    left.caption("Calibration: points on the dashed line mean a predicted 20% really converts 20% of the time.")
    cached.chart(right, charts.expected_vs_actual, pd.DataFrame(evaluation["buckets"]), width="stretch")
    right.caption("Expected vs actual: mean predicted probability and the observed rate in each bucket.")


evaluation_charts(evaluation)

st.subheader("Past runs: predicted vs actual")
past = cached.performance_summary(db, name)
if past.empty:
    st.caption("No past run's outcome window has ended yet; each run appears here once it has.")
else:
    cached.chart(st, charts.performance_chart, past, definition.propensity_type, width="stretch")
    ranged = past.dropna(subset=["likely_low", "likely_high"])
    landed = int(ranged["actual"].between(ranged["likely_low"], ranged["likely_high"]).sum())
    st.caption("Each point is a past run: where the dashed line (predicted) meets the solid one (what happened), "
               "that run's predictions came true, so you can trust the next one."
               + (f" The shaded bar at each run is the likely range it stated; what happened fell in it for {landed} "
                  f"of {len(ranged)} buckets." if len(ranged) else ""))

with st.expander("Show more: definition, data and model"):
    details = run["details"]
    st.markdown(
        f"- **Goal:** {plain(definition.goal_text())}\n- **Eligible:** active in the last {definition.eligible_days} days\n"
        f"- **Buckets:** low below {definition.low_threshold}, high from {definition.high_threshold}\n"
        f"- **Data:** events from {details['data_first_event'][:10]} to {details['data_last_event'][:10]}\n"
        f"- **Training:** {details['training']['training_rows']:,} examples from snapshots "
        f"{', '.join(details['training']['training_snapshots'])}; held out {details['training']['holdout_snapshot']}\n"
        f"- **Model:** scikit-learn {details['sklearn_version']} gradient boosting, "
        f"{details['training']['iterations']} trees, Platt-calibrated; {details['features']} features; "
        f"{plain(details['cache'])}"
        + (f"\n- **Season:** over the same weeks last year (windows from {season['from']} and {season['to']}, "
           f"customers active in the {season['lookback_days']} days before each) the goal's rate went from "
           f"{season['rates'][0]:.1%} to {season['rates'][1]:.1%} ({season['move']:+.1%}); "
           + ("carried into this run's probabilities" if carried is not None else "within chance, so not carried")
           if season else "")
    )
