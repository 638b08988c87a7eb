"""ssl_keras: rotation self-supervision for few-label image classification, in Keras 3."""

__version__ = "0.1.0"
