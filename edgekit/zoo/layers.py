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
