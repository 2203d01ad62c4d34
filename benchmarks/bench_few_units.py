"""Coverage of interval methods for the mean over a few held-out units, on a simulation.

Not a test: prints the table of docs/statistics.md. Each simulated study has n units (donors);
unit u's own score p_u ~ Beta(mean mu, concentration 20) (donors differ), observed as
Binomial(200 cells, p_u) / 200; the true value is mu. For each n and mu, 1,000 studies; an
interval method covers when its interval contains mu. Methods: percentile bootstrap and BCa over
units (1,000 draws), Student t, Student t on the logit scale (the score stage's choice,
sclinbench.evaluate.few_units). Run: .venv/bin/python benchmarks/bench_few_units.py [--n-sim 1000]
"""
import argparse

import pandas as pd

from sclinbench.evaluate.few_units import coverage_table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--n-sim", type=int, default=1000)
parser.add_argument("--n-boot", type=int, default=1000)
args = parser.parse_args()
rows = pd.DataFrame(coverage_table(n_sim=args.n_sim, n_boot=args.n_boot))
cov = rows.pivot_table(index=["n_units", "true_mean"], columns="method", values="coverage")
width = rows.pivot_table(index=["n_units", "true_mean"], columns="method", values="median_width")
print(f"coverage of nominal 95% intervals ({args.n_sim} simulated studies per row)")
print(cov.round(3).to_markdown())
print("\nmedian width")
print(width.round(3).to_markdown())
