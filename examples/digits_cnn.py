"""A small CNN hypermodel on handwritten digits: the seed's MNIST search, sized for a CPU.

``build_model(hp)`` is the convolutional network of the KerasTuner walkthrough this project
started from (two conv blocks, a dense layer, Adam with a log-scaled learning rate), adapted to
scikit-learn's 8x8 digits, which ship with scikit-learn and need no download. The second conv
block is optional, so its filter count is a conditional hyperparameter. Run it with::

    refiner run examples/digits_cnn.toml

To use a local copy of MNIST instead (``~/.keras/datasets/mnist.npz``; it is never downloaded),
set ``REFINER_DIGITS_USE_MNIST=1``; the model then takes 28x28 inputs. MNIST's 60,000 images
make every trial minutes long on a CPU.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
import numpy as np

__all__ = ["build_model", "load_data", "input_shape"]

log = logging.getLogger(__name__)

MNIST_ENV = "REFINER_DIGITS_USE_MNIST"


def _mnist_file() -> Path | None:
    """The local MNIST copy, when the environment asks for it and it exists."""
    if os.environ.get(MNIST_ENV) != "1":
        return None
    path = Path.home() / ".keras" / "datasets" / "mnist.npz"
    if not path.is_file():
        log.warning("%s=1 but %s does not exist; using scikit-learn's 8x8 digits", MNIST_ENV, path)
        return None
    return path


def input_shape() -> tuple[int, int, int]:
    return (28, 28, 1) if _mnist_file() is not None else (8, 8, 1)


def load_data() -> dict[str, np.ndarray]:
    """Fit arguments ``{"x": images, "y": labels}``: float32 images in [0, 1], shaped (n, h, w, 1).

    Shuffled with a fixed seed, because ``validation_split`` takes the last rows as they are.
    """
    path = _mnist_file()
    if path is not None:
        with np.load(path) as npz:
            x, y = npz["x_train"].astype("float32") / 255.0, npz["y_train"]
    else:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y = digits.images.astype("float32") / 16.0, digits.target  # pixel values are 0..16
    x = x.reshape(-1, *input_shape())
    order = np.random.default_rng(0).permutation(len(x))
    return {"x": x[order], "y": y[order].astype("int64")}


def build_model(hp) -> keras.Model:
    """The hypermodel: every hyperparameter is registered on every call, as KerasTuner expects."""
    model = keras.Sequential([keras.Input(shape=input_shape())])
    model.add(keras.layers.Conv2D(
        filters=hp.Int("conv_1_filter", min_value=16, max_value=64, step=16),
        kernel_size=3, padding="same", activation="relu",
    ))
    model.add(keras.layers.MaxPooling2D(pool_size=2))
    # Registered inside the scope even when unused, so the space is the same for every trial.
    use_conv_2 = hp.Boolean("use_conv_2", default=True)
    with hp.conditional_scope("use_conv_2", [True]):
        conv_2_filter = hp.Int("conv_2_filter", min_value=32, max_value=128, step=32)
    if use_conv_2:
        model.add(keras.layers.Conv2D(filters=conv_2_filter, kernel_size=3, padding="same", activation="relu"))
        model.add(keras.layers.MaxPooling2D(pool_size=2))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(units=hp.Int("dense_units", min_value=32, max_value=256, step=32), activation="relu"))
    model.add(keras.layers.Dropout(rate=hp.Float("dropout", min_value=0.0, max_value=0.5)))
    model.add(keras.layers.Dense(10, activation="softmax"))

    learning_rate = hp.Float("learning_rate", min_value=1e-4, max_value=1e-2, sampling="log")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
