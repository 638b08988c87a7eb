"""Input pipeline against training speed: is tf.data ever the bottleneck?

    python benchmarks/bench_pipeline.py                       # default preset sizes, 1024 photos
    python benchmarks/bench_pipeline.py --preset quick --photos 2048

Reads real photos from the ImageFolder at `--data-dir` (default `<repo>/../shared/data/dogs`)
and times, in one process:

1. the photos/s that `tf.data` delivers as rotation batches (decode + resize + rotations),
   one variant at a time: sequential against parallel decode, prefetch, cache (its
   first epoch fills it, later epochs read it), and the four rotations made once per
   batch (`ssl_keras.rotations.rotate_batch`) against once per photo (a per-image `map`);
   then `ssl_keras.data.pretext_dataset` itself, as the pretext stage uses it;
2. the photos/s that the rotation model (`ssl_keras.models`) trains at with `fit`, on
   batches already in memory (so the pipeline cannot slow it down), and on the real
   pipeline (where, on a CPU, both share the same cores).

A "photo" is one unlabelled photo; each becomes 4 rotated training samples. The ratio
of (1) to (2) says how much headroom the pipeline has. Writes the table, the command
and the machine to `--out` (default `benchmarks/results/pipeline.md`).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from common import machine, preset_config, write_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.path.join(REPO, "..", "shared", "data", "dogs"),
                   help="ImageFolder of photos (default: <repo>/../shared/data/dogs)")
    p.add_argument("--preset", default="default", help="config preset for image size, batch size and model")
    p.add_argument("--image-size", type=int, help="pixels a side (default: the preset's)")
    p.add_argument("--photos", type=int, default=1024, help="photos per epoch of each pipeline (default 1024)")
    p.add_argument("--train-steps", type=int, default=8, help="timed training steps (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "pipeline.md"))
    return p.parse_args(argv)


def _photos(data_dir: str, n: int, seed: int) -> tuple:
    from ssl_keras import sources

    if not os.path.isdir(data_dir):
        sys.exit(f"error: no photos at {os.path.abspath(data_dir)!r}. Expected an ImageFolder of dog photos "
                 "(one sub-folder per breed), by default <repo>/../shared/data/dogs; pass --data-dir.")
    source = sources.ImageFolder(data_dir)
    keys = sorted(r.key for r in source.records())
    keys = sorted(random.Random(seed).sample(keys, min(n, len(keys))))
    good, bad = sources.scan_images(source, keys)
    return source, good, len(bad)


def _time_epochs(ds, epochs: int) -> list[tuple[int, float]]:
    """(photos, seconds) of each pass over a dataset of (4*B rotated, labels) batches."""
    out = []
    for _ in range(epochs):
        n, start = 0, time.perf_counter()
        for x, _ in ds:
            n += int(x.shape[0]) // 4
        out.append((n, time.perf_counter() - start))
    return out


def pipelines(source, keys, image_size, batch_size):
    """The variants to time: (name, dataset, whether it caches); the last dataset is made by the caller."""
    import tensorflow as tf

    from ssl_keras import preprocessing, rotations

    autotune = tf.data.AUTOTUNE
    resize = preprocessing.resizing(image_size)

    def decoded(parallel: bool):
        ds = source.dataset(keys, [0] * len(keys))
        calls = autotune if parallel else None
        return ds.map(lambda b, _: preprocessing.decode_resized(b, resize), num_parallel_calls=calls)

    def per_batch(ds, parallel=True):
        calls = autotune if parallel else None
        ds = ds.batch(batch_size).map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=calls)
        return ds.map(rotations.rotate_batch, num_parallel_calls=calls)

    def rotate_one(image):  # (S, S, 3) -> (4, S, S, 3), (4,)
        image = tf.cast(image, tf.float32)
        return tf.stack([tf.image.rot90(image, k) for k in range(4)]), tf.range(4, dtype=tf.int32)

    def per_image(ds):
        ds = ds.map(rotate_one, num_parallel_calls=autotune).batch(batch_size)
        return ds.map(lambda x, y: (tf.reshape(x, (-1, image_size, image_size, 3)), tf.reshape(y, (-1,))),
                      num_parallel_calls=autotune)  # (4*B, S, S, 3)

    return [
        ("sequential decode, no cache, no prefetch", per_batch(decoded(False), parallel=False), False),
        ("parallel decode (AUTOTUNE), no cache, no prefetch", per_batch(decoded(True)), False),
        ("parallel decode + prefetch, no cache", per_batch(decoded(True)).prefetch(autotune), False),
        ("parallel decode + cache + prefetch", per_batch(decoded(True).cache()).prefetch(autotune), True),
        ("same, but rotations per photo (a per-image map)", per_image(decoded(True).cache()).prefetch(autotune),
         True),
        ("`data.pretext_dataset` (training=True: shuffle, flip)", None, True),  # made by the caller
    ]


def train_speed(model_cfg, stage, image_size, batches, steps, train_ds=None):
    """Photos/s of `fit` on the rotation model: 3 epochs of `steps`, the faster of epochs 2 and 3."""
    import keras
    import tensorflow as tf

    from ssl_keras import models, train

    class Timer(keras.callbacks.Callback):  # keeps the fastest epoch after the first (tracing) one
        seconds = float("inf")

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch > 0:
                self.seconds = min(self.seconds, time.perf_counter() - self.start)

    if train_ds is None:
        x = tf.concat([b[0] for b in batches], 0)
        y = tf.concat([b[1] for b in batches], 0)
        train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(int(batches[0][0].shape[0])).cache().repeat()
    keras.utils.set_random_seed(0)
    model = models.build_rotation_model(model_cfg, image_size)
    train.compile_model(model, stage, steps)
    timer = Timer()
    model.fit(train_ds, epochs=3, steps_per_epoch=steps, callbacks=[timer], verbose=0,
              shuffle=False)
    rotated = int(batches[0][0].shape[0])
    return steps * rotated // 4 / timer.seconds, timer.seconds


def main(argv=None) -> int:
    args = _parse(argv)
    from ssl_keras import quiet

    quiet.import_tensorflow()
    from ssl_keras import data

    cfg = preset_config(args.preset, args.image_size)
    d = cfg.data
    started = time.time()
    source, keys, skipped = _photos(args.data_dir, args.photos, args.seed)
    host = machine()
    print(f"{len(keys)} photos ({skipped} unreadable skipped), {d.image_size} px, batch {d.batch_size} photos "
          f"(= {4 * d.batch_size} rotated samples); {host}", flush=True)

    rows = []  # (variant, epoch label, photos/s)
    for name, ds, cached in pipelines(source, keys, d.image_size, d.batch_size):
        if ds is None:
            ds = data.pretext_dataset(source, keys, d.image_size, d.batch_size, training=True, stage=cfg.pretext,
                                      seed=args.seed)
        rates = [n / s for n, s in _time_epochs(ds, 3 if cached else 2)]
        if cached:  # the first epoch decodes and fills the cache, the later ones read it
            found = [("1 (decode)", rates[0]), ("2-3 (from cache)", max(rates[1:]))]
        else:  # every epoch decodes: the faster of two
            found = [("1-2 (decode, faster)", max(rates))]
        for label, rate in found:
            rows.append((name, label, rate))
            print(f"  {name:55s} epoch {label:16s} {rate:8.0f} photos/s", flush=True)

    # Training speed on in-memory batches: the same rotated batches the pipeline makes.
    cached = data.pretext_dataset(source, keys, d.image_size, d.batch_size)
    batches = [b for b, _ in zip(cached, range(max(1, min(args.train_steps, len(keys) // d.batch_size))))]
    train_mem, secs_mem = train_speed(cfg.model, cfg.pretext, d.image_size, batches, args.train_steps)
    print(f"  fit, batches in memory: {train_mem:.0f} photos/s ({secs_mem:.1f} s for {args.train_steps} steps)",
          flush=True)
    # One full pass an epoch: epoch 1 decodes and fills the cache, epochs 2 and 3 (timed) read it.
    real = data.pretext_dataset(source, keys, d.image_size, d.batch_size, training=True, stage=cfg.pretext,
                                seed=args.seed).repeat()
    train_real, _ = train_speed(cfg.model, cfg.pretext, d.image_size, batches, len(keys) // d.batch_size, real)
    print(f"  fit, on data.pretext_dataset: {train_real:.0f} photos/s", flush=True)

    steady = next(r[2] for r in rows if r[0].startswith("parallel decode + cache") and "cache)" in r[1])
    first = next(r[2] for r in rows if r[0].startswith("parallel decode + cache") and r[1].startswith("1"))
    project = [r for r in rows if r[0].startswith("`data.pretext_dataset`")]
    lines = [
        f"Preset `{args.preset}`: {d.image_size} px, batch {d.batch_size} photos = {4 * d.batch_size} rotated "
        f"samples, model filters {list(cfg.model.filters)} x {cfg.model.convs_per_block} conv(s) per block; "
        f"{len(keys)} photos an epoch (JPEG, ~190x140 px, from `{os.path.relpath(args.data_dir, REPO)}`).",
        "",
        "| pipeline variant | epoch | photos/s | rotated samples/s | × training speed |",
        "|---|---|---:|---:|---:|",
    ]
    for name, label, rate in rows:
        lines.append(f"| {name} | {label} | {rate:,.0f} | {4 * rate:,.0f} | {rate / train_mem:.1f}× |")
    lines += [
        f"| **training** (`fit`, rotation model, batches already in memory) | 2-3 | **{train_mem:,.0f}** | "
        f"{4 * train_mem:,.0f} | 1.0× |",
        f"| training (`fit` on `data.pretext_dataset`, sharing the cores) | 2-3 | {train_real:,.0f} | "
        f"{4 * train_real:,.0f} | {train_real / train_mem:.2f}× |",
        "",
        f"Pipeline ÷ training: **{steady / train_mem:.0f}×** from the cache (every epoch after the first), "
        f"{first / train_mem:.0f}× while decoding (the first epoch); the project's own pipeline: "
        + ", ".join(f"{r[2] / train_mem:.0f}× (epoch {r[1].split()[0]})" for r in project) + ". "
        f"Training on the real pipeline runs at {100 * train_real / train_mem:.0f}% of its in-memory speed.",
        "",
        f"Command: `python benchmarks/bench_pipeline.py --preset {args.preset} --image-size {d.image_size} "
        f"--photos {args.photos} "
        f"--train-steps {args.train_steps}` ({time.time() - started:.0f} s)",
        f"Machine: {host}.",
    ]
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
