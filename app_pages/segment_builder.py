"""Segment builder: a rule over an instance's scores, with its audience and trade-off shown before saving."""

import streamlit as st

from cai import segments
from cai.errors import CaiError
from ui import access, activation, cached, state
from ui.components import plain

db = state.db_path()
viewer = access.current()
st.title("Segment builder")
table = cached.instances_table(db)
scored = table[table["last_run_date"].notna()]["name"].tolist()
if not scored:
    st.info("No instance has scores yet. Run an instance on the Customer AI page first.")
    st.stop()

params = st.query_params
instance = access.resolve(params.get("instance"), scored) or scored[0]
if "instance" in params and params["instance"] != access.reference(viewer, instance, scored):
    params["instance"] = access.reference(viewer, instance, scored)
bucket = params.get("bucket") if params.get("bucket") in segments.BUCKET_LABELS else "high"
if st.session_state.get("builder_origin") != (instance, bucket) or "builder_range" not in st.session_state:
    # A new Create Segment click pre-fills the form; later edits by the user are kept. Streamlit forgets a
    # widget's value once another page has been shown, so a return by the navigation pre-fills it again.
    definition = cached.latest_run(db, instance)["definition"]
    rule = segments.bucket_rule(instance, bucket, definition.low_threshold, definition.high_threshold)
    st.session_state.update({
        "builder_origin": (instance, bucket), "builder_instance": instance, "builder_field": "score",
        "builder_range": (float(rule.minimum or 0), float(rule.maximum or 100)),
        "builder_name": access.shown_text(viewer, segments.suggested_name(instance, bucket)),
    })

instance = st.selectbox("Instance", scored, key="builder_instance", format_func=access.option_labels(viewer, scored))
field = st.radio("Filter on", list(segments.RANGE_FIELDS), horizontal=True, key="builder_field")
top = 1.0 if field == "probability" else 100.0
low, high = st.session_state.get("builder_range", (0.0, top))
if high > top:
    st.session_state["builder_range"] = (min(low, top), top)
low, high = st.slider(f"{field.capitalize()} from (inclusive) to (exclusive; the top end includes everyone)",
                      0.0, top, key="builder_range", step=0.01 if field == "probability" else 1.0)
columns = st.columns(2)
country = columns[0].text_input("Country (optional, exact)", key="builder_country").strip() or None
tier = columns[1].text_input("Loyalty tier (optional, exact)", key="builder_tier").strip() or None
rule = segments.Rule(instance=instance, field=field, minimum=low if low > 0 else None,
                     maximum=high if high < top else None, country=country, loyalty_tier=tier)
st.code(access.shown_text(viewer, rule.text()), language=None)

figures_slot = st.container(border=True)
with st.expander("Expected return (optional): value per conversion and cost per contact"):
    columns = st.columns(2)
    value = columns[0].number_input("Value per conversion", min_value=0.0, value=0.0, key="builder_value")
    cost = columns[1].number_input("Cost per contact", min_value=0.0, value=0.0, key="builder_cost")
figures = segments.measure(db, rule, value if value else None, cost if value else None)
with figures_slot:
    cells = st.columns(5)
    cells[0].metric("Audience", f"{figures['size']:,}", f"{figures['share']:.1%} of scored", delta_color="off",
                    delta_arrow="off")
    likely = (f"likely {figures['expected_low']:,.0f}–{figures['expected_high']:,.0f}"
              if figures["expected_low"] is not None and figures["size"] else None)
    cells[1].metric("Expected conversions", f"{figures['expected_conversions']:,.0f}", likely, delta_color="off",
                    delta_arrow="off")
    cells[2].metric("Expected precision", f"{figures['precision']:.1%}" if figures["precision"] is not None else "—")
    cells[3].metric("Expected recall", f"{figures['recall']:.1%}" if figures["recall"] is not None else "—")
    cells[4].metric("Expected return", f"{figures['expected_return']:,.0f}" if "expected_return" in figures else "—")
    columns = st.columns([4, 1], vertical_alignment="bottom")
    name = columns[0].text_input("Segment name", key="builder_name", max_chars=segments.MAX_NAME_CHARS)
    save = columns[1].button("Save", type="primary", key="builder_save", disabled=not viewer.can_edit,
                             width="stretch")
    description = st.text_input("Description (optional)", key="builder_description")
    activate_to = activation.choose_on_save(db, viewer)
    access.view_only_note(viewer)
st.caption("Precision and recall come from the held-out customers of the latest run: of those this rule would have "
           "targeted, the share that converted, and the share of all converters it would have reached. Return is "
           "expected conversions × value − audience × cost.")

if save:
    try:
        saved = segments.create_segment(db, name, rule, description, actor=viewer.actor)
    except CaiError as error:
        figures_slot.error(plain(error))
    else:
        cached.invalidate()
        st.session_state.pop("builder_origin", None)
        delivered = activation.activate_saved(db, viewer, saved["name"], activate_to)
        state.flash(f"Saved “{plain(saved['name'])}” with {saved['size']:,} profiles. {plain(delivered)}".strip())
        st.switch_page("app_pages/segments.py", query_params={"segment": saved["name"]})
