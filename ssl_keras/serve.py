"""`python -m ssl_keras.serve`: the command of `ssl_keras.serving` (see `ssl_keras.serving.cli`)."""

import sys

from ssl_keras.serving.cli import main

if __name__ == "__main__":
    sys.exit(main())
