"""How fast this machine is, and how much of it a model's training uses.

The reference is a plain float32 matmul: a chain of n x n `keras.ops.matmul`s, the best of 3
timings. Machines seen by this project reach 46 to 450 GFLOP/s on 2 cores, and training runs at
a share of it, so a time is printed beside the matmul rate measured in the same run.

A model's training FLOPs per sample count 2 x the multiply-accumulates (MACs) of every Conv2D
and Dense layer for the forward pass, x 3 for a training step (the backward pass computes
gradients for both the inputs and the weights, each about one forward pass). BatchNorm, ReLU,
pooling, resizing and the optimiser are left out: they are memory-bound and small next to the
convolutions (`benchmarks/bench_compute.py` cross-checks with TensorFlow's profiler).
"""

from __future__ import annotations

import time


def matmul_flops(n: int = 2048, repeats: int = 8, dtype: str = "float32") -> float:
    """Best FLOP/s over 3 timings of a chain of `repeats` n x n matmuls (eager, one after another), after one
    warm-up chain.

    A chain (c <- c @ b), not the same product repeated: a graph optimiser could merge
    identical matmuls into one and count 8 for the price of 1.
    """
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.standard_normal((n, n)), dtype)
    b = keras.ops.convert_to_tensor(rng.standard_normal((n, n)) / n**0.5, dtype)  # keeps the chain's scale steady

    def chain():
        c = a
        for _ in range(repeats):
            c = keras.ops.matmul(c, b)
        return float(keras.ops.convert_to_numpy(keras.ops.cast(c[0, 0], "float32")))  # waits for the result

    chain()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        chain()
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start))
    return best


def run_matmul_gflops() -> float:
    """The float32 matmul rate a run prints beside its times, in GFLOP/s: 1024 x 1024, a chain of 8 (about
    0.3 s on a 50 GFLOP/s machine, a tenth of that on a fast one)."""
    return matmul_flops(n=1024, repeats=8) / 1e9


def model_flops(model) -> dict:
    """Forward MACs of every Conv2D and Dense layer (nested models included) for one sample, and the forward
    and training FLOPs they make."""
    import keras

    macs = {}

    def walk(m):
        for layer in m.layers:
            if isinstance(layer, keras.Model):
                walk(layer)
            elif isinstance(layer, keras.layers.Conv2D):
                _, h, w, c_out = layer.output.shape
                k_h, k_w, c_in, _ = layer.kernel.shape
                macs[layer.name] = h * w * k_h * k_w * c_in * c_out
            elif isinstance(layer, keras.layers.Dense):
                c_in, c_out = layer.kernel.shape
                macs[layer.name] = c_in * c_out

    walk(model)
    forward = 2 * sum(macs.values())
    return {"macs": macs, "forward": forward, "train": 3 * forward}
