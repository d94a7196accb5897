"""Run cellucid 0.0.9's prepare (the ``key`` layout's reference writer) on a saved matrix.

Runs inside its own virtual environment (cellucid 0.0.9 conflicts with the
0.9.2 the test suite installs): ``python cellucid009_export.py IN.npz OUT BITS LEVEL``.
"""

import contextlib
import io
import sys

import numpy as np
import pandas as pd
import scipy.sparse as sp
from cellucid import prepare

if __name__ == "__main__":
    src, out, bits, level = sys.argv[1:5]
    z = np.load(src, allow_pickle=False)
    X = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    genes = [str(g) for g in z["genes"]]
    n = X.shape[0]
    rng = np.random.default_rng(0)
    with contextlib.redirect_stdout(io.StringIO()):
        prepare(
            latent_space=rng.normal(size=(n, 3)),
            obs=pd.DataFrame(index=[str(i) for i in range(n)]),
            obs_keys=[],
            var=pd.DataFrame(index=genes),
            gene_expression=X,
            var_gene_id_column="index",
            out_dir=out,
            X_umap_2d=rng.normal(size=(n, 2)),
            var_quantization=None if bits == "none" else int(bits),
            compression=None if level == "none" else int(level),
            obs_categorical_dtype="uint8",
            dataset_name="ref",
            dataset_id="ref",
        )
