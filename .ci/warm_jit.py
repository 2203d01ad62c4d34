"""Compile pynndescent's numba functions into the venv's cache (CI only, in the background).

The paper's disease pipeline builds its kNN graph with pynndescent from 8,192 cells; its first call
in a new virtual environment compiles for 60-80 s on 2 cores. CI runs this while the first (mostly
one-core) tests run, so that the test of that path does not pay the compile on the critical path.
The test still runs the same code; only numba's on-disk cache is warm.
"""
import numpy as np

from sclinbench.evaluate.clustered import _NNDescent

X = np.random.default_rng(0).normal(size=(400, 20)).astype(np.float32)
_NNDescent(15, 0).fit_transform(X)
print("warm_jit: pynndescent compiled")
