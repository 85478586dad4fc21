"""Customer AI: propensity scoring over identity-stitched customer profiles stored in DuckDB."""

import os

# scikit-learn's OpenMP threads wait for each other at every tree, by default spinning on their core: while the
# browser or another program held the other core, that took the first start's training from 7 s to 54 s and one
# fit from 1.8 s to 23 s; sleeping instead cost nothing measurable. OpenMP reads it once, when scikit-learn first
# loads, and every entry point (the app, the command line, the benchmarks, the tests) imports this package first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
