"""Altair chart builders: each takes a DataFrame and returns a chart; none needs Streamlit."""

from __future__ import annotations

import altair as alt
import pandas as pd

BUCKET_ORDER = ["high", "medium", "low"]
GOOD, MIDDLE, BAD = "#2e7d32", "#f9a825", "#c62828"


def bucket_colors(propensity_type: str) -> dict[str, str]:
    """Green means good news: a likely conversion, or for churn an unlikely loss, so churn flips the colours."""
    if propensity_type == "churn":
        return {"high": BAD, "medium": MIDDLE, "low": GOOD}
    return {"high": GOOD, "medium": MIDDLE, "low": BAD}


def _bucket_scale(propensity_type: str) -> alt.Scale:
    colors = bucket_colors(propensity_type)
    return alt.Scale(domain=BUCKET_ORDER, range=[colors[name] for name in BUCKET_ORDER])


def bucket_donut(summary: pd.DataFrame, propensity_type: str = "conversion") -> alt.Chart:
    data = summary[["bucket", "profiles", "share"]].copy()
    return alt.Chart(data).mark_arc(innerRadius=60, outerRadius=100).encode(
        theta=alt.Theta("profiles:Q", stack=True),
        color=alt.Color("bucket:N", scale=_bucket_scale(propensity_type), sort=BUCKET_ORDER,
                        legend=alt.Legend(title="Propensity")),
        order=alt.Order("bucket_order:Q"),
        tooltip=[alt.Tooltip("bucket:N", title="Bucket"), alt.Tooltip("profiles:Q", title="Profiles", format=","),
                 alt.Tooltip("share:Q", title="Share", format=".1%")],
    ).transform_calculate(
        bucket_order="datum.bucket == 'high' ? 0 : datum.bucket == 'medium' ? 1 : 2"
    ).properties(height=230)


def score_histogram(distribution: pd.DataFrame, propensity_type: str = "conversion") -> alt.Chart:
    return alt.Chart(distribution).mark_bar().encode(
        x=alt.X("score_from:Q", bin="binned", title="Score", scale=alt.Scale(domain=[0, 100])),
        x2="score_to:Q",
        y=alt.Y("profiles:Q", title="Profiles", stack=True),
        color=alt.Color("bucket:N", scale=_bucket_scale(propensity_type), sort=BUCKET_ORDER,
                        legend=alt.Legend(title="Propensity")),
        tooltip=[alt.Tooltip("score_from:Q", title="Score from"), alt.Tooltip("score_to:Q", title="to below"),
                 alt.Tooltip("bucket:N", title="Bucket"), alt.Tooltip("profiles:Q", title="Profiles", format=",")],
    ).properties(height=260)


def factor_bars(factors: pd.DataFrame) -> alt.Chart:
    """Top factors by importance; clicking a bar selects it (selection parameter ``factor``), hovering explains it."""
    select = alt.selection_point(name="factor", fields=["label"], on="click", clear="dblclick")
    return alt.Chart(factors).mark_bar().encode(
        y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelLimit=320)),
        x=alt.X("importance_share:Q", title="Share of influence", axis=alt.Axis(format="%")),
        color=alt.condition(select, alt.value("#1565c0"), alt.value("#90a4ae")),
        tooltip=[alt.Tooltip("label:N", title="Factor"), alt.Tooltip("description:N", title="What it is"),
                 alt.Tooltip("importance_share:Q", title="Share of influence", format=".1%"),
                 alt.Tooltip("breakdown:N", title="By bucket")],
    ).add_params(select).properties(height=alt.Step(26))


def factor_breakdown(breakdown: pd.DataFrame, kind: str, propensity_type: str = "conversion") -> alt.Chart:
    """One factor's distribution per bucket: median with the middle half (numeric) or category shares."""
    scale = _bucket_scale(propensity_type)
    if kind == "categorical":
        return alt.Chart(breakdown).mark_bar().encode(
            y=alt.Y("bucket:N", sort=BUCKET_ORDER, title=None),
            x=alt.X("share:Q", stack="normalize", title="Share of the bucket", axis=alt.Axis(format="%")),
            color=alt.Color("category:N", title="Category"),
            tooltip=["bucket:N", "category:N", alt.Tooltip("share:Q", format=".1%")],
        ).properties(height=140)
    base = alt.Chart(breakdown).encode(y=alt.Y("bucket:N", sort=BUCKET_ORDER, title=None))
    spread = base.mark_rule(strokeWidth=6, opacity=0.4).encode(
        x=alt.X("p25:Q", title="Value (median, with the middle half of customers)"), x2="p75:Q",
        color=alt.Color("bucket:N", scale=scale, legend=None))
    median = base.mark_point(filled=True, size=120).encode(
        x="median:Q", color=alt.Color("bucket:N", scale=scale, legend=None),
        tooltip=["bucket:N", alt.Tooltip("median:Q", format=",.2f"), alt.Tooltip("p25:Q", format=",.2f"),
                 alt.Tooltip("p75:Q", format=",.2f")])
    return (spread + median).properties(height=140)


def lift_chart(deciles: pd.DataFrame) -> alt.Chart:
    bars = alt.Chart(deciles).mark_bar(color="#1565c0").encode(
        x=alt.X("decile:O", title="Decile (1 = highest scores)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("lift:Q", title="Lift over average"),
        tooltip=[alt.Tooltip("decile:O", title="Decile"), alt.Tooltip("lift:Q", title="Lift", format=".2f"),
                 alt.Tooltip("rate:Q", title="Conversion rate", format=".1%"),
                 alt.Tooltip("profiles:Q", title="Profiles", format=",")],
    )
    baseline = alt.Chart(pd.DataFrame({"lift": [1.0]})).mark_rule(strokeDash=[4, 4]).encode(y="lift:Q")
    return (bars + baseline).properties(height=240)


def gains_chart(deciles: pd.DataFrame) -> alt.Chart:
    data = pd.concat([pd.DataFrame({"population_share": [0.0], "cumulative_gain": [0.0]}),
                      deciles[["population_share", "cumulative_gain"]]], ignore_index=True)
    model = alt.Chart(data).mark_line(point=True, color="#1565c0").encode(
        x=alt.X("population_share:Q", title="Share of customers targeted", axis=alt.Axis(format="%")),
        y=alt.Y("cumulative_gain:Q", title="Share of conversions captured", axis=alt.Axis(format="%")),
        tooltip=[alt.Tooltip("population_share:Q", format=".0%"), alt.Tooltip("cumulative_gain:Q", format=".1%")],
    )
    chance = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(strokeDash=[4, 4], color="gray").encode(
        x="x:Q", y="y:Q")
    return (model + chance).properties(height=240)


def calibration_chart(calibration: pd.DataFrame) -> alt.Chart:
    points = alt.Chart(calibration).mark_line(point=True, color="#1565c0").encode(
        x=alt.X("predicted:Q", title="Predicted probability", axis=alt.Axis(format="%")),
        y=alt.Y("observed:Q", title="Observed rate", axis=alt.Axis(format="%")),
        tooltip=[alt.Tooltip("predicted:Q", format=".1%"), alt.Tooltip("observed:Q", format=".1%"),
                 alt.Tooltip("profiles:Q", format=",")],
    )
    top = float(max(calibration["predicted"].max(), calibration["observed"].max(), 0.01)) if len(calibration) else 1
    diagonal = alt.Chart(pd.DataFrame({"x": [0, top], "y": [0, top]})).mark_line(
        strokeDash=[4, 4], color="gray").encode(x="x:Q", y="y:Q")
    return (points + diagonal).properties(height=240)


def expected_vs_actual(buckets: pd.DataFrame) -> alt.Chart:
    data = buckets.melt(id_vars=["bucket", "profiles"], value_vars=["expected_rate", "actual_rate"],
                        var_name="measure", value_name="rate")
    data["measure"] = data["measure"].map({"expected_rate": "Expected", "actual_rate": "Actual"})
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("bucket:N", sort=BUCKET_ORDER, title="Bucket", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("measure:N", sort=["Expected", "Actual"]),
        y=alt.Y("rate:Q", title="Conversion rate", axis=alt.Axis(format="%")),
        color=alt.Color("measure:N", scale=alt.Scale(domain=["Expected", "Actual"], range=["#90caf9", "#1565c0"]),
                        title=None),
        tooltip=["bucket:N", "measure:N", alt.Tooltip("rate:Q", format=".1%"), alt.Tooltip("profiles:Q", format=",")],
    ).properties(height=240)


def events_per_month(frame: pd.DataFrame) -> alt.Chart:
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("yearmonth(month):T", title="Month"),
        y=alt.Y("events:Q", title="Events"),
        color=alt.Color("event_type:N", title="Event type", legend=alt.Legend(labelLimit=320)),
        tooltip=[alt.Tooltip("yearmonth(month):T", title="Month"), alt.Tooltip("event_type:N", title="Event type"),
                 alt.Tooltip("events:Q", title="Events", format=",")],
    ).properties(height=280)


def score_history(history: pd.DataFrame) -> alt.Chart:
    return alt.Chart(history).mark_line(point=True).encode(
        x=alt.X("score_date:T", title="Score date"),
        y=alt.Y("score:Q", title="Score", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("instance:N", title="Instance"),
        tooltip=["instance:N", "score_date:T", alt.Tooltip("score:Q", format=".1f"), "bucket:N"],
    ).properties(height=220)


def event_timeline(counts: pd.DataFrame) -> alt.Chart:
    return alt.Chart(counts).mark_circle().encode(
        x=alt.X("week:T", title="Week"),
        y=alt.Y("event_type:N", title=None),
        size=alt.Size("events:Q", title="Events"),
        tooltip=["week:T", "event_type:N", "events:Q"],
    ).properties(height=260)


def performance_chart(summary: pd.DataFrame, propensity_type: str = "conversion") -> alt.Chart:
    """Per past run (x: its as-of date) and bucket, in the buckets' colours: predicted conversions as a dashed line
    over a shaded bar of their likely range, actual as a solid one."""
    runs = summary.assign(as_of=summary["as_of"].astype(str))
    data = runs.melt(id_vars=["as_of", "bucket", "profiles"], value_vars=["predicted", "actual"], var_name="measure",
                     value_name="conversions")
    data["measure"] = data["measure"].map({"predicted": "Predicted", "actual": "Actual"})
    x = alt.X("as_of:O", title="Run as of")
    color = alt.Color("bucket:N", sort=BUCKET_ORDER, scale=_bucket_scale(propensity_type),
                      legend=alt.Legend(title="Bucket"))
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=x, y=alt.Y("conversions:Q", title="Conversions in the window"), color=color,
        strokeDash=alt.StrokeDash("measure:N", sort=["Predicted", "Actual"], legend=alt.Legend(title="")),
        detail="measure:N",
        tooltip=[alt.Tooltip("as_of:O", title="Run as of"), alt.Tooltip("bucket:N", title="Bucket"),
                 alt.Tooltip("measure:N", title="Measure"),
                 alt.Tooltip("conversions:Q", title="Conversions", format=",.0f"),
                 alt.Tooltip("profiles:Q", title="Profiles", format=",")],
    )
    # A bar per run, not an area between runs: a bucket with one run that stated a range still shows it.
    bands = alt.Chart(runs.dropna(subset=["likely_low", "likely_high"])).mark_rule(strokeWidth=10, opacity=0.2).encode(
        x=x, y="likely_low:Q", y2="likely_high:Q",
        color=alt.Color("bucket:N", sort=BUCKET_ORDER, scale=_bucket_scale(propensity_type), legend=None),
        tooltip=[alt.Tooltip("as_of:O", title="Run as of"), alt.Tooltip("bucket:N", title="Bucket"),
                 alt.Tooltip("likely_low:Q", title="Likely from", format=",.0f"),
                 alt.Tooltip("likely_high:Q", title="Likely to", format=",.0f")],
    )
    # The bands keep the colour scale but not the legend: the lines' solid symbols name the buckets.
    return alt.layer(bands, lines).resolve_legend(color="independent").properties(height=260)
