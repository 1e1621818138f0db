# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Ray tasks vs actors: when does your code need state?
#
# The code of https://example.org/2025/11/03/ray-tasks-vs-actors/, in the order the post runs it.
# Source: posts/2025-11-03-ray-tasks-vs-actors.md

# %% setup
# posts/2025-11-03-ray-tasks-vs-actors.md:19
import os
import time

import ray

ray.init(num_cpus=4)
print("driver pid:", os.getpid())

# %% square-task
# posts/2025-11-03-ray-tasks-vs-actors.md:36
@ray.remote
def square(x):
    return x * x

ref = square.remote(4)
print(type(ref).__name__)
print(ray.get(ref))

# Fan-out: submit 100 tasks, then collect all of them at once.
refs = [square.remote(i) for i in range(100)]
squares = ray.get(refs)
print(len(squares), squares[:5], sum(squares))

# %% print-in-task
# posts/2025-11-03-ray-tasks-vs-actors.md:58
@ray.remote
def where_am_i(tag):
    pid = os.getpid()
    print(f"task {tag!r} running in worker pid {pid}")
    return pid

worker_pid = ray.get(where_am_i.remote("hello"))
print("the task ran in another process:", worker_pid != os.getpid())

# %% get-in-loop
# posts/2025-11-03-ray-tasks-vs-actors.md:76
@ray.remote
def slow_double(x):
    time.sleep(0.1)  # stand-in for real work
    return 2 * x

start = time.perf_counter()
one_by_one = [ray.get(slow_double.remote(i)) for i in range(8)]
sequential = time.perf_counter() - start

start = time.perf_counter()
all_at_once = ray.get([slow_double.remote(i) for i in range(8)])
parallel = time.perf_counter() - start

start = time.perf_counter()
ray.get([slow_double.remote(i) for i in range(8)])  # the same batch, workers now running
warm = time.perf_counter() - start

print(one_by_one == all_at_once, all_at_once)
print(f"get inside the loop: {sequential:.2f} s, one get at the end: {parallel:.2f} s, "
      f"the same batch again: {warm:.2f} s")

# %% counter-actor
# posts/2025-11-03-ray-tasks-vs-actors.md:106
@ray.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

counter = Counter.remote()
refs = [counter.increment.remote() for _ in range(10)]
print(ray.get(refs))
ray.get(counter.get.remote())

# %% tasks-into-actor
# posts/2025-11-03-ray-tasks-vs-actors.md:136
@ray.remote
class Accumulator:
    def __init__(self):
        self.total = 0
        self.seen = 0

    def add(self, x):
        self.total += x
        self.seen += 1

    def summary(self):
        return {"seen": self.seen, "total": self.total}

acc = Accumulator.remote()
for i in range(100):
    acc.add.remote(square.remote(i))  # the ref is resolved before add() runs

summary = ray.get(acc.summary.remote())
print(summary)
print("matches the fan-out:", summary["total"] == sum(squares))
