# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Using the ray library
#
# The code of https://example.org/2025/10/27/using-the-ray-library/, in the order the post runs it.
# Source: posts/2025-10-27-using-the-ray-library.md

# %%
# posts/2025-10-27-using-the-ray-library.md:25
def get_square(x):
    return x**2

# %%
# posts/2025-10-27-using-the-ray-library.md:32
import numpy as np

n = 100
y = np.arange(n)
result = np.zeros(n)
for i in range(n):

    result[i] = get_square(y[i])

# %%
# posts/2025-10-27-using-the-ray-library.md:47
import ray

@ray.remote
def get_square2(x):
    return x**2

# %%
# posts/2025-10-27-using-the-ray-library.md:57
ray.init(num_cpus = 4)

# %% staging
# posts/2025-10-27-using-the-ray-library.md:63
all_results = []
for i in range(n):

    all_results.append( get_square2.remote(y[i]) )

# %% get
# posts/2025-10-27-using-the-ray-library.md:72
ray_results = ray.get(all_results)

# %%
# posts/2025-10-27-using-the-ray-library.md:77
ray_results

# %%
# posts/2025-10-27-using-the-ray-library.md:83
result2 = np.zeros(n)
for i in range(n):
    
    result2[i] = ray_results[i]
