# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Large NumPy arrays in Ray: ray.put once, read zero-copy
#
# The code of https://example.org/2025/11/10/ray-put-and-large-arrays/, in the order the post runs it.
# Source: posts/2025-11-10-ray-put-and-large-arrays.md

# %% make-array
# posts/2025-11-10-ray-put-and-large-arrays.md:18
import time

import numpy as np
import ray

ray.init()

rng = np.random.default_rng(0)
big = rng.standard_normal((1_000, 3_125))
print(big.shape, big.dtype, f"{big.nbytes / 1e6:.0f} MB")

# %% tags=["remove-input"]
# posts/2025-11-10-ray-put-and-large-arrays.md:32
# Start the worker processes before timing anything, so that process start-up
# does not end up in the first measurement.
@ray.remote
def _warm_up():
    return None

_ = ray.get([_warm_up.remote() for _ in range(8)])

# %% implicit-copies
# posts/2025-11-10-ray-put-and-large-arrays.md:45
@ray.remote
def chunk_sum(arr, i, n_chunks):
    rows = np.array_split(np.arange(arr.shape[0]), n_chunks)[i]
    return float(arr[rows].sum())

N_CHUNKS = 8

start = time.perf_counter()
partials = ray.get([chunk_sum.remote(big, i, N_CHUNKS) for i in range(N_CHUNKS)])
implicit_s = time.perf_counter() - start

print(f"sum of slices: {sum(partials):.6f}")
print(f"direct sum:    {big.sum():.6f}")
print(f"8 calls passing the array itself: {implicit_s * 1000:.0f} ms")

# %% put-once
# posts/2025-11-10-ray-put-and-large-arrays.md:69
big_ref = ray.put(big)

start = time.perf_counter()
partials_ref = ray.get([chunk_sum.remote(big_ref, i, N_CHUNKS) for i in range(N_CHUNKS)])
put_s = time.perf_counter() - start

print("same partial sums:", np.allclose(partials, partials_ref))
print(f"8 calls passing one ObjectRef: {put_s * 1000:.0f} ms "
      f"({implicit_s / put_s:.0f}x faster than passing the array)")

# %% zero-copy
# posts/2025-11-10-ray-put-and-large-arrays.md:95
start = time.perf_counter()
view = ray.get(big_ref)
get_us = (time.perf_counter() - start) * 1e6

start = time.perf_counter()
private = big.copy()
copy_us = (time.perf_counter() - start) * 1e6

again = ray.get(big_ref)
print(f"ray.get of {view.nbytes / 1e6:.0f} MB: {get_us:.0f} µs; big.copy(): {copy_us:.0f} µs")
print("equal to the original:", np.array_equal(view, big))
print("two gets share memory:", np.shares_memory(view, again))
print("owns its data:", view.flags.owndata)
view.flags.writeable

# %% read-only tags=["raises-exception"]
# posts/2025-11-10-ray-put-and-large-arrays.md:115
view[0, 0] = 0.0

# %% copy-then-write
# posts/2025-11-10-ray-put-and-large-arrays.md:123
@ray.remote
def standardise_rows(arr):
    out = arr.copy()  # private, writeable copy; arr itself is read-only
    out -= out.mean(axis=1, keepdims=True)
    out /= out.std(axis=1, keepdims=True)
    return out

scaled = ray.get(standardise_rows.remote(big_ref))
print(scaled.shape, "writeable:", scaled.flags.writeable)
print("row means ~0:", np.allclose(scaled.mean(axis=1), 0.0))
print("row stds  ~1:", np.allclose(scaled.std(axis=1), 1.0))
print("original untouched:", np.array_equal(ray.get(big_ref), big))

# %% [markdown]
# posts/2025-11-10-ray-put-and-large-arrays.md:145 (shown, not run)
# @ray.remote
# def total():
#     return big.sum()  # `big` is captured from the enclosing scope
#
# ray.get(total.remote())
