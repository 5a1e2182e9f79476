"""Small transformers: a keyword transformer (KWT, Berg et al. 2021) on audio features, and a
tiny text classifier. Mean pooling instead of a class token keeps the graphs plain for converters."""

from __future__ import annotations

from ..errors import ConfigError


def _encoder_block(x, dim, heads, mlp_dim, dropout, name):
    from keras import layers

    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln1")(x)
    h = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, name=f"{name}_mha")(h, h)
    x = layers.Add(name=f"{name}_add1")([x, h])
    h = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ln2")(x)
    h = layers.Dense(mlp_dim, activation="gelu", name=f"{name}_mlp1")(h)
    h = layers.Dropout(dropout)(h)
    h = layers.Dense(dim, name=f"{name}_mlp2")(h)
    return layers.Add(name=f"{name}_add2")([x, h])


def _encode_classify(x, num_classes, depth, dim, heads, mlp_dim, dropout):
    from keras import layers

    from .layers import PositionEmbedding

    x = PositionEmbedding(name="pos_embed")(x)
    for i in range(depth):
        x = _encoder_block(x, dim, heads, mlp_dim, dropout, f"block{i}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = layers.GlobalAveragePooling1D()(x)
    return layers.Dense(num_classes, activation="softmax", name="probs")(x)


def kwt(input_shape, num_classes, dim: int = 64, depth: int = 4, heads: int = 2, mlp_dim: int = 128,
        dropout: float = 0.1):
    """Keyword transformer: each feature frame is a token (linear projection + learned positions),
    ``depth`` pre-norm encoder blocks, mean pooling, softmax. KWT-1 is dim 64, depth 12, heads 1, mlp 256."""
    import keras
    from keras import layers

    if len(input_shape) != 2:
        raise ConfigError(f"kwt expects (frames, coefficients) features; received input shape {input_shape}")
    if dim % heads:
        raise ConfigError(f"kwt: dim ({dim}) must be divisible by heads ({heads})")
    inp = keras.Input(input_shape, name="features")
    x = layers.LayerNormalization(epsilon=1e-6, name="input_norm")(inp)
    x = layers.Dense(dim, name="patch_embed")(x)
    return keras.Model(inp, _encode_classify(x, num_classes, depth, dim, heads, mlp_dim, dropout), name="kwt")


def text_transformer(input_shape, num_classes, vocab_size: int = 5000, dim: int = 32, depth: int = 2,
                     heads: int = 2, mlp_dim: int = 64, dropout: float = 0.1):
    """Token ids ``(max_length,)`` -> embedding + learned positions -> ``depth`` encoder blocks -> mean pool."""
    import keras
    from keras import layers

    if len(input_shape) != 1:
        raise ConfigError(f"text_transformer expects token ids (max_length,); received input shape {input_shape}")
    inp = keras.Input(input_shape, dtype="int32", name="tokens")
    x = layers.Embedding(vocab_size, dim, name="token_embed")(inp)
    return keras.Model(inp, _encode_classify(x, num_classes, depth, dim, heads, mlp_dim, dropout),
                       name="text_transformer")
