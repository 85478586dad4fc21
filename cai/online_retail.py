"""The UCI Online Retail transaction log as Customer AI events: one purchase event per invoice, CRMID per customer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import duckdb

from cai import ingest
from cai.errors import CaiError

DATASET = "Online Retail (UCI)"


def to_events_csv(source: Path, target: Path, max_customers: int | None = None) -> int:
    """Converts the log into our events CSV: guests, cancellations and non-positive lines are dropped, as in the
    data set's reference protocol. Returns the number of purchase events written."""
    if not Path(source).is_file():
        raise CaiError(f"There is no file at {source}.")
    con = duckdb.connect()
    try:
        con.execute(
            """
            CREATE TEMP TABLE purchases AS
            SELECT 'OR-' || InvoiceNo AS _id,
                   strftime(min(strptime(InvoiceDate, ['%m/%d/%Y %H:%M', '%Y-%m-%d %H:%M:%S', '%Y-%m-%d %H:%M'])),
                            '%Y-%m-%dT%H:%M:%SZ') AS timestamp,
                   'commerce.purchases' AS event_type,
                   CAST(CAST(CustomerID AS DOUBLE) AS BIGINT)::VARCHAR AS crmid,
                   round(sum(Quantity * UnitPrice), 2) AS value,
                   round(sum(Quantity * UnitPrice), 2) AS price_total,
                   sum(Quantity) AS quantity,
                   InvoiceNo AS order_id,
                   arg_max(StockCode, Quantity * UnitPrice) AS sku,
                   arg_max(Description, Quantity * UnitPrice) AS product_name,
                   'web' AS channel
            FROM (SELECT InvoiceNo, StockCode, Description, CAST(Quantity AS INTEGER) AS Quantity, InvoiceDate,
                         CAST(UnitPrice AS DOUBLE) AS UnitPrice, CustomerID
                  FROM read_csv($source, all_varchar = true, header = true))
            WHERE CustomerID IS NOT NULL AND CustomerID <> '' AND NOT starts_with(InvoiceNo, 'C')
              AND Quantity > 0 AND UnitPrice > 0
            GROUP BY InvoiceNo, CustomerID
            """,
            {"source": str(source)},
        )
        if max_customers:
            con.execute(
                "DELETE FROM purchases WHERE crmid NOT IN "
                "(SELECT DISTINCT crmid FROM purchases ORDER BY crmid LIMIT $n)", {"n": max_customers})
        count = con.execute("SELECT count(*) FROM purchases").fetchall()[0][0]
        con.execute("COPY (SELECT * FROM purchases ORDER BY timestamp) TO '" + str(Path(target)).replace("'", "''")
                    + "' (HEADER, DELIMITER ',')")
    finally:
        con.close()
    return count


def load(db_path: Path, source: Path, max_customers: int | None = None, actor: str = "local") -> ingest.BatchReport:
    with tempfile.TemporaryDirectory() as folder:
        events_csv = Path(folder) / "online_retail_events.csv"
        to_events_csv(source, events_csv, max_customers)
        return ingest.ingest_file(db_path, events_csv, kind="events", dataset=DATASET, actor=actor)
