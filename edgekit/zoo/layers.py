"""Custom layers of the zoo, registered so ``.keras`` files load (import this module first)."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="edgekit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding per position to ``[batch, tokens, dim]``."""

    def build(self, input_shape):
        self.pos = self.add_weight(shape=(1, input_shape[-2], input_shape[-1]),
                                   initializer=keras.initializers.RandomNormal(stddev=0.02), name="pos")

    def call(self, x):
        return x + self.pos


@keras.saving.register_keras_serializable(package="edgekit")
class TimeMeanNormalization(keras.layers.Layer):
    """Subtract each feature's mean over the time axis (cepstral mean normalization) within the window.

    A constant spectral colouring (a microphone, a room, a voice's timbre) is an additive offset on
    MFCCs or log-mels; removing it per window makes the model hear words rather than the recording
    chain. It lowers to ReduceMean + Sub in TFLite, ONNX and OpenVINO."""

    def call(self, x):
        return x - keras.ops.mean(x, axis=1, keepdims=True)
