"""Where does a fit's end wait? Runs a command with a watch on every fit's end: from the last callback of a fit
(`train.Pace.on_train_end`) to the end of its `Checkpointer.finish` (`final.keras` written), a wait of more than
`STALL_WATCH_SECONDS` (default 4) dumps every thread's Python stack to stderr, once
(`faulthandler`, from C: it fires even while the wait holds the GIL). The dump reads the frames of a thread that
may be running: with a wait of a few seconds it fires only in a stall, but a tiny `STALL_WATCH_SECONDS` (0.02)
can crash the process. With `STALL_WATCH_PYSPY` set to a `py-spy` executable, a process outside this one dumps
the native stacks too (`py-spy dump --native`) instead.

    python research/stall_watch.py -m ssl_keras.run --preset quick --data-dir ../shared/data/dogs
    python research/stall_watch.py benchmarks/gain_vs_budget.py --budgets --fixed ref --seeds 0 1 2

Child Python processes (gain_vs_budget runs each run in one) are watched too: the command runs with this folder's
`sitecustomize.py` first on PYTHONPATH, which installs the watch when `STALL_WATCH` is set.
"""

import faulthandler
import os
import runpy
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def install() -> None:
    """Patches `ssl_keras.train` (imports TensorFlow)."""
    from ssl_keras import train

    seconds = float(os.environ.get("STALL_WATCH_SECONDS", "4"))
    py_spy = os.environ.get("STALL_WATCH_PYSPY")
    end, finish = train.Pace.on_train_end, train.Checkpointer.finish
    watcher = []

    def on_train_end(self, logs=None):
        end(self, logs)
        sys.stderr.write(f"[stall_watch] {self.fit_name}: last callback done at {time.strftime('%T')}\n")
        if py_spy:
            command = (f"sleep {seconds} && echo '[stall_watch] waiting:' >&2 && "
                       f"{py_spy} dump --native --pid {os.getpid()} >&2")
            watcher.append(subprocess.Popen(["bash", "-c", command]))
        else:
            faulthandler.dump_traceback_later(seconds)

    def watched_finish(self):
        start = time.perf_counter()
        finish(self)
        faulthandler.cancel_dump_traceback_later()
        while watcher:
            process = watcher.pop()
            process.kill()
            process.wait()
        sys.stderr.write(f"[stall_watch] finish took {time.perf_counter() - start:.1f} s\n")

    train.Pace.on_train_end, train.Checkpointer.finish = on_train_end, watched_finish


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    os.environ["STALL_WATCH"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.join(HERE, "stall_watch_site"),
                                                             os.environ.get("PYTHONPATH")]))
    install()
    if sys.argv[1] == "-m":
        sys.argv = sys.argv[2:]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
        runpy.run_path(sys.argv[0], run_name="__main__")
