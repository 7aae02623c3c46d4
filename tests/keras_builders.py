"""Keras model builders for tests/test_keras.py (named by 'module:function' in specs)."""

from __future__ import annotations


def digits_mlp(info, width=32, dropout=0.0):
    import keras

    return keras.Sequential([
        keras.Input((info.n_features,)),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(info.n_classes),
    ])


def wrong_outputs(info):
    import keras

    return keras.Sequential([keras.Input((info.n_features,)), keras.layers.Dense(3)])


def not_a_model(info):
    return "a string"
