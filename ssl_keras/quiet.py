"""TensorFlow without its C++ start-up noise on a machine without a GPU.

The CUDA build of TensorFlow prints cuFFT/cuDNN/cuBLAS "Unable to register factory"
lines, "computation placer already registered" and "failed call to cuInit" on every
start on a CPU machine. They are harmless. The first ones are printed before TensorFlow's
logging is configured, so no setting hides them: `import_tensorflow` sends file
descriptor 2 to /dev/null for the import only. Each entry point calls it first. The
TF.js converter's graph optimiser (grappler) prints "Starting new session" lines the
same way; the export silences those with `stderr_to_devnull`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sys


def has_gpu_device() -> bool:
    """Whether this machine has an NVIDIA device node (then TensorFlow's messages may matter)."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))


@contextlib.contextmanager
def stderr_to_devnull():
    """Sends file descriptor 2 to /dev/null inside the block (C++ log lines that no setting hides)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Imports and returns `tensorflow`; on a machine without a GPU, with its start-up lines silenced.

    Sets `TF_CPP_MIN_LOG_LEVEL` (3 without a GPU, else 2) unless it is set already; child
    processes inherit it.
    """
    gpu = has_gpu_device()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if gpu else "3")
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")  # tensorflowjs imports decision forests
    if "tensorflow" in sys.modules or gpu:
        import tensorflow

        return tensorflow
    with stderr_to_devnull():
        import tensorflow
    return tensorflow
