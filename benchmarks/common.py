"""What every benchmark prints beside its table: the machine it ran on."""

import os
import platform


def machine() -> str:
    """CPU model, cores, memory, GPUs, TensorFlow and the load at the start (another job shows up in the load)."""
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
        with open("/proc/meminfo") as f:
            mem = f", {int(f.readline().split()[1]) / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (f"{cpu}, {os.cpu_count()} cores{mem}, {len(gpus)} GPU(s); TensorFlow {tf.__version__}; "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def preset_config(name: str, image_size: int | None = None):
    """The named preset, at `image_size` when given (a benchmark's `--image-size`)."""
    from ssl_keras import config as config_lib
    from ssl_keras import presets

    cfg = presets.preset(name)
    return config_lib.override(cfg, {"data": {"image_size": image_size}}) if image_size else cfg


def write_table(lines, path: str) -> str:
    """Joins a benchmark's table lines, writes them to `path` (folders made) and prints them."""
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    print("\n" + text + f"\nWritten to {path}")
    return text
