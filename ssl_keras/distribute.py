"""The `tf.distribute` strategy a run trains under: default, mirrored or multi-worker.

Keras 3 on the TensorFlow backend follows `tf.distribute`: build *and* compile the
model inside `strategy.scope()`, then `fit` a dataset of *global* batches (Keras
splits each batch across the replicas). Each process makes one strategy, on first
use, and reuses it (`MultiWorkerMirroredStrategy` may only be made once).

- "default": `tf.distribute.get_strategy()`, no distribution.
- "mirrored": `MirroredStrategy` over every local GPU. With no GPU it mirrors over
  the logical CPU devices instead (one unless the program split the CPU with
  `tf.config.set_logical_device_configuration` before TensorFlow started), which is
  how the tests run it; it is a check of correctness, not a speed-up, on a CPU.
- "multiworker": `MultiWorkerMirroredStrategy` over the machines in `TF_CONFIG`
  (`{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}`),
  every worker running the same command. Give each worker its own `--run-dir`:
  every worker writes checkpoints, and only the chief's (index 0) are the ones to keep.
  It must be made before TensorFlow runs any op ("Collective ops must be configured
  at program startup"), so make it first thing.

Keras 3.15's `fit` does not yet run under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585, open): it reduces the first input batch across workers
to build the model, and reduces the scalar logs with `axis=0`; both raise.
`strategy_for("multiworker")` mends those two reductions in Keras' TensorFlow
trainer (see `_mend_keras_for_multiworker`); nothing changes for the other strategies.

BatchNormalization computes its statistics per replica (on the per-replica share
of the batch), so a distributed run matches a one-device run "up to noise", not
to the bit, when the model has BatchNorm or dropout.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from ssl_keras.config_base import STRATEGIES as STRATEGY_NAMES

_made: dict[str, tf.distribute.Strategy] = {}


def _check_tf_config(raw: str | None) -> dict:
    """The parsed `TF_CONFIG`, checked for a worker cluster and this worker's task."""
    example = ('{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not raw:
        raise ValueError(f"`--strategy multiworker` needs the TF_CONFIG environment variable. Received: none. "
                         f"Expected JSON such as {example}")
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}). Received: {raw!r}. Expected e.g. {example}") from e
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    workers = (cluster or {}).get("worker") if isinstance(cluster, dict) else None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise ValueError(f"TF_CONFIG must list `cluster.worker` as host:port strings. Received: {raw!r}. "
                         f"Expected e.g. {example}")
    kind = task.get("type") if isinstance(task, dict) else None
    members = cluster.get(kind) if kind in ("worker", "chief") else None
    if not isinstance(members, list) or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(members):
        raise ValueError(f"TF_CONFIG must give this process's `task` as {{\"type\": \"worker\", \"index\": i}} "
                         f"with 0 <= i < {len(workers)} (or a \"chief\" listed in the cluster). Received: {raw!r}")
    return tf_config


def _is_multiworker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._in_multi_worker_mode()


def _mend_keras_for_multiworker() -> None:
    """Works around keras-team/keras#20585 in Keras' TensorFlow trainer; a no-op when done already.

    1. `_maybe_symbolic_build` reduces the first (per-replica) input batch across
       workers only to learn its shapes; under multi-worker that reduction raises.
       Here it builds from this worker's own share of the batch (same shapes).
    2. `reduce_per_replica(..., "auto")` reduces every log with `strategy.reduce("MEAN", v,
       axis=0)`, which raises for the scalar losses and metrics. Scalars are averaged over
       the workers instead (`axis=None`); the metric variables are already summed over
       all replicas when they update, so every worker logs the same global value.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_ssl_keras_mended", False):
        return
    if not (hasattr(trainer, "reduce_per_replica") and hasattr(trainer.TensorFlowTrainer, "_maybe_symbolic_build")):
        raise RuntimeError("This Keras version's TensorFlow trainer has no `reduce_per_replica` / "
                           "`_maybe_symbolic_build` to mend for multi-worker training (keras-team/keras#20585). "
                           "Check whether the bug is fixed and drop `_mend_keras_for_multiworker`.")
    reduce_per_replica = trainer.reduce_per_replica
    maybe_symbolic_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def mended_reduce(values, strategy, reduction):
        if reduction in ("auto", "mean") and _is_multiworker(strategy):
            def reduce(v):
                if v.shape.rank == 0:  # a loss or metric value
                    return strategy.reduce("MEAN", v, axis=None)
                return strategy.reduce("MEAN", v, axis=0)

            return trainer.tree.map_structure(reduce, values)
        return reduce_per_replica(values, strategy, reduction)

    def mended_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not _is_multiworker(strategy):
            return maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = next(it)
            break

        def local(v):
            return strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v

        return maybe_symbolic_build(self, data_batch=trainer.tree.map_structure(local, data_batch))

    trainer.reduce_per_replica = mended_reduce
    trainer.TensorFlowTrainer._maybe_symbolic_build = mended_build
    trainer._ssl_keras_mended = True


def strategy_for(name: str) -> tf.distribute.Strategy:
    """The strategy called `name`, made once per process.

    Args:
        name: "default", "mirrored" or "multiworker".

    Returns:
        A `tf.distribute.Strategy`; build and compile models in its `scope()`.

    Raises:
        ValueError: for an unknown name, or "multiworker" without a usable `TF_CONFIG`.
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"Unknown strategy {name!r}. Expected one of {STRATEGY_NAMES}.")
    if name in _made:
        return _made[name]
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            strategy = tf.distribute.MirroredStrategy([d.name for d in gpus])
        else:
            cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
            # NCCL is for GPUs; on CPU devices the gradients are summed on one device.
            strategy = tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice())
    else:
        _check_tf_config(os.environ.get("TF_CONFIG"))
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        _mend_keras_for_multiworker()
    _made[name] = strategy
    return strategy


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line: the strategy's class and how many replicas train in step."""
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s) in sync"
