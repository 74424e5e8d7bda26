"""Build the bundled example: a small CNN trained on scikit-learn's 8x8 digits (real data, offline).

Writes next to this script:
  digits/digits.keras              the float model
  digits/digits.calibration.npz    x: 200 training images, representative data for int8
  digits/digits.eval.npz           x, y: the held-out test split, for accuracy/agreement
  digits/digits.train.npz          x, y: the training split, for compression recipes (`hil sweep`)
`hil run` picks the calibration and eval sidecars up automatically, `hil sweep` the training one too.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def build(out_dir: Path = HERE / "digits", epochs: int = 40, seed: int = 0) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    keras.utils.set_random_seed(seed)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]  # (n, 8, 8, 1) in [0, 1]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 1, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digits_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_tr, y_tr, epochs=epochs, batch_size=32, verbose=0, validation_split=0.1)
    _, acc = model.evaluate(x_te, y_te, verbose=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "digits.keras"
    model.save(path)
    np.savez_compressed(out_dir / "digits.calibration.npz", x=x_tr[:200])
    np.savez_compressed(out_dir / "digits.eval.npz", x=x_te, y=y_te)
    np.savez_compressed(out_dir / "digits.train.npz", x=x_tr, y=y_tr)
    print(f"{path}: test accuracy {acc * 100:.2f} % on {len(y_te)} held-out digits")
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=HERE / "digits")
    ap.add_argument("--epochs", type=int, default=40)
    a = ap.parse_args()
    build(a.out, a.epochs)
