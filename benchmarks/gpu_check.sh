#!/usr/bin/env bash
# The GPU items of BENCHMARKS.md, in one prepared run (Keras 3 on JAX: the lent GPU machines have JAX, not TensorFlow).
#
#   bash benchmarks/gpu_check.sh                          # preset `full` (128 px, 5 blocks x 2 convs), 30 steps
#   bash benchmarks/gpu_check.sh --preset default --steps 50
#   JAX_PLATFORMS=cpu bash benchmarks/gpu_check.sh --preset tiny --steps 3   # a CPU smoke run
#
# Measures, on pre-decoded synthetic uint8 photos held in host memory (no photo decoding, no TensorFlow):
#   1. where the four rotations run: `ssl_keras.rotations.rotate_batch` (keras.ops), jitted, on a batch
#      copied to the accelerator; prints the devices of its input and outputs (the device-placement log),
#      and with --trace a JAX profiler trace of a few training steps under $OUT/jax_trace (TensorBoard);
#   2. photos/s of copy-to-device + rotations alone (the input side of training);
#   3. photos/s that the rotation model (`ssl_keras.models`) trains at, float32, mixed_float16 and mixed_bfloat16,
#      with the rotations made on the device every step;
# and prints a table (also written to $OUT/gpu_check.md when $OUT is set, else to benchmarks/results/).
# The `full` preset's accuracy needs the tf.data photo pipeline, so TensorFlow: not measured here.
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND=jax
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
exec python - "$OUT_DIR" "$@" <<'PY'
import argparse
import os
import platform
import sys
import time

import jax
import keras
import numpy as np

from ssl_keras import presets
from ssl_keras import models, rotations, train

out_dir = sys.argv[1]
p = argparse.ArgumentParser(prog="benchmarks/gpu_check.sh")
p.add_argument("--preset", default="full")
p.add_argument("--steps", type=int, default=30, help="timed training steps per precision")
p.add_argument("--batch-size", type=int, help="photos per batch (default: the preset's)")
p.add_argument("--trace", action="store_true", help="write a JAX profiler trace of 3 steps to <out>/jax_trace")
args = p.parse_args(sys.argv[2:])

assert keras.backend.backend() == "jax", keras.backend.backend()
cfg = presets.preset(args.preset)
size, batch = cfg.data.image_size, args.batch_size or cfg.data.batch_size
device = jax.devices()[0]
lines = [f"# GPU check: preset `{args.preset}`, {size} px, batch {batch} photos = {4 * batch} rotated samples", "",
         f"Devices: {jax.devices()}; JAX {jax.__version__}, Keras {keras.__version__} (backend jax); "
         f"host {platform.processor() or platform.machine()}, {os.cpu_count()} cores.", ""]
print("\n".join(lines), flush=True)

rng = np.random.default_rng(0)
photos = rng.integers(0, 256, (8 * batch, size, size, 3), dtype=np.uint8)  # pre-decoded, in host memory


@jax.jit
def rotate(x):  # (B, S, S, 3) uint8 on the device -> (4*B, S, S, 3) float32, (4*B,) int32, on the device
    return rotations.rotate_batch(x.astype("float32"))


def batch_on_device(i):
    j = i % 8
    return jax.device_put(photos[j * batch:(j + 1) * batch], device)


x = batch_on_device(0)
rotated, labels = rotate(x)
placement = (f"Placement: photos {x.devices()} -> rotate_batch -> rotated {rotated.devices()} "
             f"{tuple(rotated.shape)} {rotated.dtype}, labels {labels.devices()} {tuple(labels.shape)}")
expected = np.concatenate([np.rot90(np.asarray(x, np.float32), k, axes=(1, 2)) for k in range(4)])
assert np.array_equal(np.asarray(rotated), expected), "rotations on the device differ from numpy's rot90"
lines.append(placement + " (checked against numpy's rot90)")
print(lines[-1], flush=True)


def timed(fn, steps):
    fn(0)  # compile / warm up
    fn(1)
    start = time.perf_counter()
    for i in range(steps):
        result = fn(i)
    jax.block_until_ready(result)
    return time.perf_counter() - start


rot_s = timed(lambda i: rotate(batch_on_device(i)), 3 * args.steps)
rot_rate = 3 * args.steps * batch / rot_s
rows = [("copy to device + rotations (input side)", "-", rot_rate)]
print(f"  input side: {rot_rate:,.0f} photos/s", flush=True)

for policy in ("float32", "mixed_float16", "mixed_bfloat16"):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = models.build_rotation_model(cfg.model, size)
    train.compile_model(model, cfg.pretext, args.steps)

    def step(i, model=model):
        r, y = rotate(batch_on_device(i))
        return model.train_on_batch(r, y, return_dict=True)["loss"]  # a host number: waits for the step

    secs = timed(step, args.steps)
    loss = float(step(0))
    conv = model.get_layer("backbone").get_layer("block1_conv1")
    rows.append((f"train rotation model, {policy} (convs compute in {conv.compute_dtype})", f"{loss:.3f}",
                 args.steps * batch / secs))
    print(f"  {rows[-1][0]}: {rows[-1][2]:,.0f} photos/s (loss {loss:.3f})", flush=True)
    if args.trace and policy == "mixed_float16":
        trace_dir = os.path.join(out_dir, "jax_trace")
        with jax.profiler.trace(trace_dir):
            for i in range(3):
                step(i)
        lines.append(f"Profiler trace of 3 mixed_float16 steps: {trace_dir} (open with TensorBoard's profile tab).")
keras.mixed_precision.set_global_policy("float32")

lines += ["", "| what | loss after | photos/s | rotated samples/s | input side ÷ this |", "|---|---:|---:|---:|---:|"]
for name, loss, rate in rows:
    lines.append(f"| {name} | {loss} | {rate:,.0f} | {4 * rate:,.0f} | {rot_rate / rate:.1f}× |")
lines += ["", f"Command: `bash benchmarks/gpu_check.sh {' '.join(sys.argv[2:])}`"]
text = "\n".join(lines) + "\n"
with open(os.path.join(out_dir, "gpu_check.md"), "w") as f:
    f.write(text)
print("\n" + text, flush=True)
PY
