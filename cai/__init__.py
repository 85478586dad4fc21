"""Customer AI: propensity scoring over identity-stitched customer profiles stored in DuckDB."""
