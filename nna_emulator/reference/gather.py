"""Reference embedding: rows of an int8 table, a real 0 for negative ids."""

from __future__ import annotations

import numpy as np


def embedding(ids, table_q, zero_code: int = 0) -> np.ndarray:
    """Rows of an int8 table (V, D) for integer ids of any shape -> ids.shape + (D,). A negative id
    (sherpa-onnx's "no token yet" context) gives a row of ``zero_code`` (the code of a real 0)."""
    ids = np.asarray(ids, dtype=np.int64)
    table_q = np.asarray(table_q)
    if ids.size and ids.max(initial=-1) >= table_q.shape[0]:
        raise IndexError(f"token id {int(ids.max())} outside the {table_q.shape[0]}-row embedding table")
    out = table_q[np.maximum(ids, 0)]
    out[ids < 0] = zero_code
    return out
