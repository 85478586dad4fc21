"""First start: build the demo store and train the tutorial's instance so the dashboard is full at once."""

from __future__ import annotations

import streamlit as st

from cai import demo, engine, instances, store


def ensure_database(db: store.Store) -> None:
    if not store.is_empty(db):
        engine.recover_interrupted_runs(db)
        return
    with st.status("First start: building the demo store and training the tutorial's model…", expanded=True) as box:
        st.write(f"Generating {demo.DEFAULT_PROFILES:,} demo profiles and their events")
        summary = demo.build_demo(db)
        instances.ensure_tutorial_instance(db)
        st.write(f"{summary.events:,} events from {summary.first_event:%d %b %Y} to {summary.last_event:%d %b %Y}")
        bar = st.progress(0.0, text="Training “Product Purchase Propensity”")
        result = engine.run_instance(db, instances.TUTORIAL_INSTANCE,
                                     progress=lambda fraction, message: bar.progress(fraction, text=message))
        box.update(label=f"Demo ready: {result.profiles_scored:,} profiles scored", state="complete", expanded=False)
