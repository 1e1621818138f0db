# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Loops, vectorisation and broadcasting in NumPy, measured
#
# The code of https://example.org/2025/11/17/numpy-vectorisation/, in the order the post runs it.
# Source: posts/2025-11-17-numpy-vectorisation.md

# %% tags=["remove-input"]
# posts/2025-11-17-numpy-vectorisation.md:14
import numpy as np

np.set_printoptions(precision=3, suppress=True)

# %% setup
# posts/2025-11-17-numpy-vectorisation.md:23
import math
import time

import numpy as np

def best_of(fn, *args, repeat=3):
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, result

rng = np.random.default_rng(42)
points = rng.random((800, 3))  # 800 points in the unit cube
print(points.shape, points[:2])

# %% loops
# posts/2025-11-17-numpy-vectorisation.md:49
def dist_loop(pts):
    rows = pts.tolist()  # Python floats: indexing an ndarray element by element is even slower
    n = len(rows)
    out = [[0.0] * n for _ in range(n)]
    for i in range(n):
        xi, yi, zi = rows[i]
        for j in range(n):
            xj, yj, zj = rows[j]
            out[i][j] = math.sqrt((xi - xj) ** 2 + (yi - yj) ** 2 + (zi - zj) ** 2)
    return np.array(out)

t_loop, d_loop = best_of(dist_loop, points, repeat=1)
print(f"loops: {t_loop * 1000:.0f} ms, result shape {d_loop.shape}")

# %% rows
# posts/2025-11-17-numpy-vectorisation.md:72
def dist_rows(pts):
    out = np.empty((len(pts), len(pts)))
    for i in range(len(pts)):
        out[i] = np.sqrt(((pts[i] - pts) ** 2).sum(axis=1))
    return out

t_rows, d_rows = best_of(dist_rows, points)
print(f"row-wise: {t_rows * 1000:.1f} ms, {t_loop / t_rows:.0f}x faster than loops")
print("same as loops:", np.allclose(d_rows, d_loop))

# %% broadcast
# posts/2025-11-17-numpy-vectorisation.md:98
def dist_broadcast(pts):
    diff = pts[:, None, :] - pts[None, :, :]
    return np.sqrt((diff ** 2).sum(axis=-1))

t_bcast, d_bcast = best_of(dist_broadcast, points)
print(f"broadcast: {t_bcast * 1000:.1f} ms, {t_loop / t_bcast:.0f}x faster than loops")
print("same as loops:", np.allclose(d_bcast, d_loop))

# %% gram
# posts/2025-11-17-numpy-vectorisation.md:116
def dist_gram(pts):
    sq = (pts ** 2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * pts @ pts.T
    return np.sqrt(np.clip(d2, 0.0, None))  # rounding can make d2 slightly negative

t_gram, d_gram = best_of(dist_gram, points)
err = np.abs(d_gram - d_loop)
print(f"gram: {t_gram * 1000:.2f} ms, {t_loop / t_gram:.0f}x faster than loops")
print("same as loops:", np.allclose(d_gram, d_loop))
i, j = np.unravel_index(err.argmax(), err.shape)
print(f"worst error: {err.max():.0e}, at ({i}, {j}), on the diagonal: {i == j}")
off_diagonal = ~np.eye(len(points), dtype=bool)
print("same off the diagonal:", np.allclose(d_gram[off_diagonal], d_loop[off_diagonal]))

# %% moving-average
# posts/2025-11-17-numpy-vectorisation.md:147
signal = np.cumsum(rng.standard_normal(100_000))
W = 50

def ma_loop(x, w):
    xs = x.tolist()
    return np.array([sum(xs[i:i + w]) / w for i in range(len(xs) - w + 1)])

def ma_convolve(x, w):
    return np.convolve(x, np.ones(w) / w, mode="valid")

def ma_cumsum(x, w):
    c = np.cumsum(np.concatenate(([0.0], x)))
    return (c[w:] - c[:-w]) / w

def ma_windows(x, w):
    return np.lib.stride_tricks.sliding_window_view(x, w).mean(axis=1)

t_ma_loop, ma_ref = best_of(ma_loop, signal, W, repeat=1)
for fn in (ma_convolve, ma_cumsum, ma_windows):
    t, ma = best_of(fn, signal, W)
    print(f"{fn.__name__:12s} {t * 1000:6.2f} ms  {t_ma_loop / t:5.0f}x  "
          f"allclose: {np.allclose(ma, ma_ref)}")
ma_ref[:4]
