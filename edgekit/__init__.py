"""edgekit: compact neural networks from data to edge devices.

The package root imports nothing heavy: device-side code (``edgekit.runtime``,
``edgekit.features``) must never pull TensorFlow or Keras.
"""

__version__ = "0.1.0"
