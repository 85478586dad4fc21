"""Column headers in words, and dates as dates, for the tables the pages show."""

import streamlit as st

_WHEN = {"format": "D MMM YYYY, HH:mm"}
RUN_HISTORY_COLUMNS = {
    "run_id": "Run", "status": "Status", "as_of": st.column_config.DateColumn("Score date", format="D MMM YYYY"),
    "started_at": st.column_config.DatetimeColumn("Started (UTC)", **_WHEN),
    "duration_s": st.column_config.NumberColumn("Seconds", format="%.1f"), "profiles_scored": "Profiles scored",
    "auc": "AUC", "grade": "Quality", "error": "Error",
}
DATASET_COLUMNS = {
    "dataset": "Dataset", "kind": "Holds", "batches": "Files loaded", "failed_batches": "Files refused",
    "rows_accepted": "Rows accepted", "rows_rejected": "Rows refused", "rows_duplicate": "Duplicates skipped",
    "first_event": st.column_config.DatetimeColumn("First event", format="D MMM YYYY"),
    "last_event": st.column_config.DatetimeColumn("Last event", format="D MMM YYYY"),
    "created_at": None,
}
BATCH_COLUMNS = {
    "batch_id": "Batch", "dataset": "Dataset", "file_name": "File", "status": "Status", "rows_total": "Rows",
    "rows_accepted": "Accepted", "rows_rejected": "Refused", "rows_duplicate": "Duplicates",
    "profiles_created": "New profiles", "profiles_merged": "Profiles merged", "errors": "Problems",
    "started_at": st.column_config.DatetimeColumn("Started (UTC)", **_WHEN),
    "finished_at": st.column_config.DatetimeColumn("Finished (UTC)", **_WHEN),
}
SEGMENT_COLUMNS = {
    "name": "Segment", "instance": "Instance",
    "size_at_creation": st.column_config.NumberColumn("Size at creation", format="localized"),
    "size_now": st.column_config.NumberColumn("Size now", format="localized"),
    "created_at": st.column_config.DatetimeColumn("Created (UTC)", **_WHEN),
    "created_by": "Created by", "rule_text": None, "description": None,  # both shown when the segment is opened
}
MEMBER_COLUMNS = {
    "profile_id": st.column_config.NumberColumn("Profile ID", format="%d"), "email": "Email", "ecid": "ECID",
    "score": st.column_config.NumberColumn("Score", format="%.1f"),
    "probability": st.column_config.NumberColumn("Probability", format="percent"), "percentile": "Percentile",
    "bucket": "Bucket",
}
EVENT_COLUMNS = {
    "timestamp": st.column_config.DatetimeColumn("When (UTC)", **_WHEN), "event_type": "Event type",
    "value": st.column_config.NumberColumn("Value", format="%.2f"), "product_name": "Product", "sku": "SKU",
    "quantity": "Quantity", "channel": "Channel", "page_name": "Page", "tracking_code": "Campaign",
}


def show(frame, where=st, **options):
    """Every table the pages draw: as this viewer may see it (identities masked), then ``st.dataframe``'s options."""
    from ui import access

    return where.dataframe(access.shown(access.current(), frame), **options)
