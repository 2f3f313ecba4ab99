"""Numba kernels, bit-exact twins of ``nna_emulator.reference`` (tested over random inputs and edge
cases). The arithmetic mirrors ``nna_emulator.spec`` step for step in int64.

Every reference op has its twin here with the same signature: ``linear``, ``conv1d``, ``conv2d``,
``add``, ``mul``, ``clip``, ``lookup``, ``lstm_cell``, ``layer_norm``, ``softmax``, ``embedding`` and
``concat``. Kernels are serial: the emulator runs next to a training process on small machines, where
Numba's OpenMP threads competing with torch's cost more than they gain (see ``asr.losses.pruned``).
"""

from __future__ import annotations

import numba
import numpy as np

from nna_emulator import spec

_INT32_MIN, _INT32_MAX = spec.INT32_MIN, spec.INT32_MAX


@numba.njit(cache=True, inline="always")
def _srdhm(a, b):
    if a == _INT32_MIN and b == _INT32_MIN:
        return _INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    num = ab + nudge
    return num >> 31 if num >= 0 else -((-num) >> 31)


@numba.njit(cache=True, inline="always")
def _rdbpot(x, exponent):
    if exponent == 0:
        return x
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@numba.njit(cache=True, inline="always")
def _requant(acc, j, fixed, m0, shift, mult, out_zp, qmin, qmax):
    """One accumulator of output channel j -> saturated output code (spec.requantize, both profiles)."""
    if acc < _INT32_MIN or acc > _INT32_MAX:
        raise OverflowError("int32 accumulator overflow")
    if fixed:
        left = shift[j] if shift[j] > 0 else 0
        right = -shift[j] if shift[j] < 0 else 0
        v = min(max(acc << left, _INT32_MIN), _INT32_MAX)
        v = _rdbpot(_srdhm(v, np.int64(m0[j])), right) + out_zp
    else:
        v = np.int64(np.rint(np.float32(acc) * mult[j])) + out_zp
    return min(max(v, qmin), qmax)


@numba.njit(cache=True)
def _conv1d(x, x_zp, w, bias, dilation, groups, pad_left, t_out, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    n, c_in, t = x.shape
    c_out, c_per_group, k = w.shape
    out_per_group = c_out // groups
    for b in range(n):
        for co in range(c_out):
            g = co // out_per_group
            for s in range(t_out):
                acc = np.int64(bias[co])
                for ci in range(c_per_group):
                    for j in range(k):
                        src = s + j * dilation - pad_left
                        if 0 <= src < t:  # padding holds the zero point: contributes 0
                            acc += (np.int64(x[b, g * c_per_group + ci, src]) - x_zp) * np.int64(w[co, ci, j])
                out[b, co, s] = _requant(acc, co, fixed, m0, shift, mult, out_zp, qmin, qmax)


def _requant_params(multiplier, m: int, profile: str):
    if profile not in spec.PROFILES:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    fixed = profile == "fixed_point"
    m0, shift = spec.quantize_multipliers(multiplier, m) if fixed else (np.zeros(m, np.int64), np.zeros(m, np.int64))
    return fixed, m0, shift, np.broadcast_to(np.asarray(multiplier, dtype=np.float32), (m,)).copy()


def conv1d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, dilation: int = 1, groups: int = 1,
           pad_left: int = 0, pad_right: int = 0, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.conv1d``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    c_out, _, k = w_q.shape
    t_out = max(x_q.shape[2] + pad_left + pad_right - dilation * (k - 1), 0)
    bias = np.zeros(c_out, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, c_out, profile)
    out = np.empty((x_q.shape[0], c_out, t_out), dtype=fmt.dtype)
    _conv1d(x_q, np.int64(x_zp), w_q, bias, dilation, groups, pad_left, t_out, fixed, m0, shift, mult,
            np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    return out


@numba.njit(cache=True)
def _accumulate(x_q, x_zp, w_q, acc):
    """int64 accumulation: any K."""
    n, k = x_q.shape
    m = w_q.shape[0]
    for i in range(n):
        for j in range(m):
            a = np.int64(0)
            for t in range(k):
                a += (np.int64(x_q[i, t]) - x_zp) * np.int64(w_q[j, t])
            acc[i, j] = a


_BLOCK_ROWS = 16  # rows of x that share one pass over a weight row (kept in L1)


@numba.njit(cache=True)
def _accumulate_int32(xs, w_q, acc):
    """The fast path: int16 (x - zp) times int8 weights summed in int32, exact because
    K * 255 * 128 < 2^31 (checked by the caller); the loop over K vectorizes (AVX2), and blocks of
    rows reuse each weight row from L1."""
    n, k = xs.shape
    m = w_q.shape[0]
    for i0 in range(0, n, _BLOCK_ROWS):
        i1 = min(i0 + _BLOCK_ROWS, n)
        for j in range(m):
            for i in range(i0, i1):
                a = np.int32(0)
                for t in range(k):
                    a += np.int32(xs[i, t]) * np.int32(w_q[j, t])
                acc[i, j] = a


@numba.njit(cache=True)
def _requant_rows(acc, bias, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    """``spec.requantize`` of (R, M) accumulators + bias, channel j on the last axis; the
    profile branch and the shifts are hoisted out of the element loop (20x faster than ``_requant``
    per element). Returns False if an accumulator left int32 (the caller raises)."""
    rows, m = acc.shape
    ok = True
    for i in range(rows):
        for j in range(m):
            v = np.int64(acc[i, j]) + bias[j]
            if v < _INT32_MIN or v > _INT32_MAX:
                ok = False
            if fixed:
                left = shift[j] if shift[j] > 0 else 0
                right = -shift[j] if shift[j] < 0 else 0
                v = min(max(v << left, _INT32_MIN), _INT32_MAX)
                q = _rdbpot(_srdhm(v, m0[j]), right)
            else:
                q = np.int64(np.rint(np.float32(v) * mult[j]))
            out[i, j] = min(max(q + out_zp, qmin), qmax)
    return ok


def linear(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.linear``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    m, k = w_q.shape
    n = x_q.shape[0]
    bias = np.zeros(m, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, m, profile)
    if x_q.dtype == np.int8 and w_q.dtype == np.int8 and k * 255 * 128 < 2**31 and -128 <= x_zp <= 127:
        acc = np.empty((n, m), dtype=np.int32)
        _accumulate_int32(x_q.astype(np.int16) - np.int16(x_zp), w_q, acc)
    else:
        acc = np.empty((n, m), dtype=np.int64)
        _accumulate(x_q, np.int64(x_zp), w_q, acc)
    out = np.empty((n, m), dtype=fmt.dtype)
    if not _requant_rows(acc, bias, fixed, m0, shift, mult, np.int64(out_zp), fmt.qmin, fmt.qmax, out):
        raise OverflowError("int32 accumulator overflow in linear: split the reduction (too many int8 products)")
    return out


@numba.njit(cache=True)
def _lookup(flat, table, offset, out):
    for i in range(flat.size):
        k = np.int64(flat[i]) - offset
        if k < 0 or k >= table.size:
            raise ValueError("lookup: input code outside the table's input format")
        out[i] = table[k]


def lookup(x_q: np.ndarray, table: np.ndarray, in_fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.lookup``."""
    x_q = np.asarray(x_q)
    out = np.empty(x_q.size, dtype=table.dtype)
    _lookup(np.ascontiguousarray(x_q).reshape(-1), table, in_fmt.qmin, out)
    return out.reshape(x_q.shape)


@numba.njit(cache=True)
def _conv2d(x, x_zp, w, bias, sh, sw, ph, pw, groups, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    n, c_in, h, wd = x.shape
    c_out, c_per_group, kh, kw = w.shape
    _, _, h_out, w_out = out.shape
    out_per_group = c_out // groups
    for b in range(n):
        for co in range(c_out):
            g = co // out_per_group
            for oy in range(h_out):
                for ox in range(w_out):
                    acc = np.int64(bias[co])
                    for ci in range(c_per_group):
                        for i in range(kh):
                            y = oy * sh + i - ph
                            if y < 0 or y >= h:
                                continue
                            for j in range(kw):
                                xx = ox * sw + j - pw
                                if 0 <= xx < wd:
                                    acc += (np.int64(x[b, g * c_per_group + ci, y, xx]) - x_zp) * np.int64(w[co, ci, i, j])
                    out[b, co, oy, ox] = _requant(acc, co, fixed, m0, shift, mult, out_zp, qmin, qmax)


def conv2d(x_q, x_zp: int, w_q, bias_q, multiplier, out_zp: int, stride=(1, 1), padding=(0, 0), groups: int = 1,
           profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.conv2d``."""
    x_q, w_q = np.ascontiguousarray(x_q), np.ascontiguousarray(w_q)
    (sh, sw), (ph, pw) = stride, padding
    c_out, _, kh, kw = w_q.shape
    h_out = max((x_q.shape[2] + 2 * ph - kh) // sh + 1, 0)
    w_out = max((x_q.shape[3] + 2 * pw - kw) // sw + 1, 0)
    bias = np.zeros(c_out, dtype=np.int64) if bias_q is None else np.asarray(bias_q, dtype=np.int64)
    fixed, m0, shift, mult = _requant_params(multiplier, c_out, profile)
    out = np.empty((x_q.shape[0], c_out, h_out, w_out), dtype=fmt.dtype)
    _conv2d(x_q, np.int64(x_zp), w_q, bias, sh, sw, ph, pw, groups, fixed, m0, shift, mult, np.int64(out_zp),
            fmt.qmin, fmt.qmax, out)
    return out


def _broadcast_flat(a, b):
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    return np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1), a.shape


@numba.njit(cache=True)
def _add_fixed(a, a_zp, b, b_zp, ma, sa, mb, sb, mo, so, out_zp, qmin, qmax, out):
    ma_, sa_ = np.full(1, ma, np.int64), np.full(1, sa, np.int64)
    mb_, sb_ = np.full(1, mb, np.int64), np.full(1, sb, np.int64)
    mo_, so_ = np.full(1, mo, np.int64), np.full(1, so, np.int64)
    fz = np.zeros(1, np.float32)
    big = np.int64(_INT32_MAX)
    for i in range(a.size):
        va = _requant((np.int64(a[i]) - a_zp) << 20, 0, True, ma_, sa_, fz, 0, -big - 1, big)
        vb = _requant((np.int64(b[i]) - b_zp) << 20, 0, True, mb_, sb_, fz, 0, -big - 1, big)
        out[i] = _requant(va + vb, 0, True, mo_, so_, fz, out_zp, qmin, qmax)


@numba.njit(cache=True)
def _add_float(a, a_zp, b, b_zp, ra, rb, out_zp, qmin, qmax, out):
    for i in range(a.size):
        y = np.float32(np.int64(a[i]) - a_zp) * ra + np.float32(np.int64(b[i]) - b_zp) * rb
        out[i] = min(max(np.int64(np.rint(y)) + out_zp, qmin), qmax)


def add(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.add``."""
    from nna_emulator.reference import add_params

    a, b, shape = _broadcast_flat(a_q, b_q)
    out = np.empty(a.size, dtype=fmt.dtype)
    if profile == "fixed_point":
        (ma, sa), (mb, sb), (mo, so) = (spec.quantize_multiplier(m) for m in add_params(a_scale, b_scale, out_scale))
        _add_fixed(a, np.int64(a_zp), b, np.int64(b_zp), ma, sa, mb, sb, mo, so, np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    elif profile == "onnxruntime":
        _add_float(a, np.int64(a_zp), b, np.int64(b_zp), np.float32(a_scale / out_scale), np.float32(b_scale / out_scale),
                   np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    else:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(spec.PROFILES)}")
    return out.reshape(shape)


@numba.njit(cache=True)
def _mul(a, a_zp, b, b_zp, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    for i in range(a.size):
        out[i] = _requant((np.int64(a[i]) - a_zp) * (np.int64(b[i]) - b_zp), 0, fixed, m0, shift, mult, out_zp, qmin, qmax)


def mul(a_q, a_scale: float, a_zp: int, b_q, b_scale: float, b_zp: int, out_scale: float, out_zp: int,
        profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.mul``."""
    a, b, shape = _broadcast_flat(a_q, b_q)
    fixed, m0, shift, mult = _requant_params(a_scale * b_scale / out_scale, 1, profile)
    out = np.empty(a.size, dtype=fmt.dtype)
    _mul(a, np.int64(a_zp), b, np.int64(b_zp), fixed, m0, shift, mult, np.int64(out_zp), fmt.qmin, fmt.qmax, out)
    return out.reshape(shape)


@numba.njit(cache=True)
def _clip(x, lo, hi, out):
    for i in range(x.size):
        out[i] = min(max(x[i], lo), hi)


def clip(x_q, lo: int, hi: int) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.clip``."""
    x_q = np.asarray(x_q)
    out = np.empty(x_q.size, dtype=x_q.dtype)
    _clip(np.ascontiguousarray(x_q).reshape(-1), x_q.dtype.type(max(lo, np.iinfo(x_q.dtype).min)),
          x_q.dtype.type(min(hi, np.iinfo(x_q.dtype).max)), out)
    return out.reshape(x_q.shape)


@numba.njit(cache=True)
def _lstm_cell(gates, c, cell_frac_bits, sig, tanh, tanh_c, fixed, m0, shift, mult, h_zp, qmin, qmax, h_out, c_out):
    n, four_h = gates.shape
    h = four_h // 4
    off = 32767  # INT16 (narrow) qmin = -32767
    for b in range(n):
        for k in range(4 * h):
            if gates[b, k] < -32767:
                raise ValueError("lstm_cell: gate code -32768 is outside the int16 (narrow) format")
        for k in range(h):
            ig = np.int64(sig[np.int64(gates[b, k]) + off])
            fg = np.int64(sig[np.int64(gates[b, h + k]) + off])
            gg = np.int64(tanh[np.int64(gates[b, 2 * h + k]) + off])
            og = np.int64(sig[np.int64(gates[b, 3 * h + k]) + off])
            v = _rdbpot(fg * np.int64(c[b, k]), 15) + _rdbpot(ig * gg, 30 - cell_frac_bits)
            v = min(max(v, -32767), 32767)
            c_out[b, k] = v
            tc = np.int64(tanh_c[v + off])
            h_out[b, k] = _requant(og * tc, 0, fixed, m0, shift, mult, h_zp, qmin, qmax)


def lstm_cell(gates_q, c_q, cell_frac_bits: int, sigmoid_table, tanh_table, tanh_cell_table,
              h_multiplier: float, h_zp: int, profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8):
    """Numba twin of ``nna_emulator.reference.lstm_cell``."""
    if not 0 <= cell_frac_bits <= 30:
        raise ValueError(f"cell_frac_bits={cell_frac_bits}: must be in 0..30")
    gates_q = np.ascontiguousarray(gates_q, dtype=np.int16)
    c_q = np.ascontiguousarray(c_q, dtype=np.int16)
    fixed, m0, shift, mult = _requant_params(h_multiplier, 1, profile)
    h_out = np.empty(c_q.shape, dtype=fmt.dtype)
    c_out = np.empty(c_q.shape, dtype=np.int16)
    _lstm_cell(gates_q.reshape(-1, gates_q.shape[-1]), c_q.reshape(-1, c_q.shape[-1]), cell_frac_bits, sigmoid_table,
               tanh_table, tanh_cell_table, fixed, m0, shift, mult, np.int64(h_zp), fmt.qmin, fmt.qmax,
               h_out.reshape(-1, c_q.shape[-1]), c_out.reshape(-1, c_q.shape[-1]))
    return h_out, c_out


@numba.njit(cache=True, inline="always")
def _isqrt(v):
    """floor(sqrt(v)) for 0 <= v < 2^62, exactly (Newton's method from above)."""
    if v < 2:
        return v
    x = np.int64(np.sqrt(np.float64(v))) + 1  # within a few units; Newton then settles on the floor
    while x * x > v:
        x = (x + v // x) // 2
    while (x + 1) * (x + 1) <= v:
        x += 1
    return x


@numba.njit(cache=True, inline="always")
def _div_round(num, den):
    q = (2 * abs(num) + den) // (2 * den)
    return -q if num < 0 else q


@numba.njit(cache=True)
def _layer_norm(x, x_zp, gamma, beta, eps_int, frac, extra, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    rows, dim = x.shape
    d = np.empty(dim, np.int64)
    for r in range(rows):
        s = np.int64(0)
        for k in range(dim):
            s += np.int64(x[r, k]) - x_zp
        ss = np.int64(0)
        for k in range(dim):
            d[k] = dim * (np.int64(x[r, k]) - x_zp) - s
            ss += d[k] * d[k]
        root = _isqrt((ss // dim + eps_int) << (2 * extra))
        for k in range(dim):
            z = _div_round(d[k] << (frac + extra), root) if root > 0 else np.int64(0)
            acc = z * np.int64(gamma[k]) + np.int64(beta[k])
            out[r, k] = _requant(acc, 0, fixed, m0, shift, mult, out_zp, qmin, qmax)


def layer_norm(x_q, x_zp: int, gamma_q, beta_q, multiplier, out_zp: int, eps_int: int,
               profile: str = "fixed_point", fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.layer_norm``."""
    from nna_emulator.reference import _LN_EXTRA_BITS, LN_FRAC_BITS

    x_q = np.ascontiguousarray(x_q)
    dim = x_q.shape[-1]
    if dim > 4096:
        raise ValueError(f"layer_norm over {dim} features: at most 4096 fit the int64 arithmetic")
    gamma = np.broadcast_to(np.asarray(gamma_q, dtype=np.int64), (dim,)).copy()
    beta = np.broadcast_to(np.asarray(beta_q, dtype=np.int64), (dim,)).copy()
    fixed, m0, shift, mult = _requant_params(multiplier, 1, profile)
    out = np.empty(x_q.shape, dtype=fmt.dtype)
    _layer_norm(x_q.reshape(-1, dim), np.int64(x_zp), gamma, beta, np.int64(eps_int), LN_FRAC_BITS, _LN_EXTRA_BITS,
                fixed, m0, shift, mult, np.int64(out_zp), fmt.qmin, fmt.qmax, out.reshape(-1, dim))
    return out


@numba.njit(cache=True)
def _softmax(x, table, out):
    rows, dim = x.shape
    for r in range(rows):
        mx = np.int64(-(1 << 40))
        for k in range(dim):
            mx = max(mx, np.int64(x[r, k]))
        total = np.int64(0)
        for k in range(dim):
            total += table[mx - np.int64(x[r, k])]
        total = max(total, 1)
        for k in range(dim):
            v = _div_round(table[mx - np.int64(x[r, k])] * 256, total) - 128
            out[r, k] = min(max(v, -128), 127)


def softmax(x_q, exp_table) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.softmax``."""
    x_q = np.ascontiguousarray(x_q)
    out = np.empty(x_q.shape, dtype=np.int8)
    if x_q.size:
        _softmax(x_q.reshape(-1, x_q.shape[-1]), np.asarray(exp_table, dtype=np.int64), out.reshape(-1, x_q.shape[-1]))
    return out


@numba.njit(cache=True)
def _embedding(ids, table, zero_code, out):
    for i in range(ids.size):
        if ids[i] < 0:
            out[i, :] = zero_code
        else:
            out[i, :] = table[ids[i]]


def embedding(ids, table_q, zero_code: int = 0) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.embedding``."""
    ids = np.asarray(ids, dtype=np.int64)
    table_q = np.ascontiguousarray(table_q)
    if ids.size and ids.max(initial=-1) >= table_q.shape[0]:
        raise IndexError(f"token id {int(ids.max())} outside the {table_q.shape[0]}-row embedding table")
    out = np.empty((ids.size, table_q.shape[1]), dtype=table_q.dtype)
    _embedding(np.ascontiguousarray(ids).reshape(-1), table_q, zero_code, out)
    return out.reshape(ids.shape + (table_q.shape[1],))


@numba.njit(cache=True)
def _requant_flat(x, zp, fixed, m0, shift, mult, out_zp, qmin, qmax, out):
    for i in range(x.size):
        out[i] = _requant(np.int64(x[i]) - zp, 0, fixed, m0, shift, mult, out_zp, qmin, qmax)


def concat(inputs, out_scale: float, out_zp: int, axis: int = -1, profile: str = "fixed_point",
           fmt: spec.QFormat = spec.INT8) -> np.ndarray:
    """Numba twin of ``nna_emulator.reference.concat``."""
    parts = []
    for q, scale, zp in inputs:
        q = np.asarray(q)
        if scale == out_scale and zp == out_zp and q.dtype == fmt.dtype:
            parts.append(q)
            continue
        fixed, m0, shift, mult = _requant_params(scale / out_scale, 1, profile)
        out = np.empty(q.size, dtype=fmt.dtype)
        _requant_flat(np.ascontiguousarray(q).reshape(-1), np.int64(zp), fixed, m0, shift, mult, np.int64(out_zp),
                      fmt.qmin, fmt.qmax, out)
        parts.append(out.reshape(q.shape))
    return np.concatenate(parts, axis=axis)
