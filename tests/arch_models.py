"""Small Keras 3 models with the shapes edge teams deploy, and a digits-derived task for each.

The compression steps must work on more than the bundled digits chain: these builders give, at a size
that trains in seconds on a CPU, the topologies of MLPerf Tiny's references (ResNet-8 for image
classification, DS-CNN for keyword spotting, MobileNetV1-0.25 for visual wake words, the FC
autoencoder for anomaly detection), of keras.applications MobileNetV2 (alpha 0.35, no weights), a
Conv1D net for sensor/audio series and a U-Net-like net with Concatenate skips. The widths and
strides follow the references; only the input sizes and the first widths are scaled down.

`digits_task(input_shape)` maps scikit-learn's 8x8 digits (the bundled example's data) onto any of
these input shapes (images resized by pixel repetition, channels repeated, 1-D series by reading the
image row by row), so that each model learns a real 10-class task and accuracy before/after a
compression step means something. Used by the tests and by benchmarks/compress_archs.py.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASSES = 10


def _keras():
    import keras

    return keras


def _conv_bn_relu(x, filters, kernel, strides=1, name=None):
    layers = _keras().layers
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x)


def resnet8(input_shape=(16, 16, 3), classes=CLASSES, filters=(16, 32, 64)):
    """MLPerf Tiny IC ResNet-8: a stem and three residual stacks, 1x1 projection shortcuts on stride 2."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input(input_shape)
    x = _conv_bn_relu(inp, filters[0], 3)
    for i, f in enumerate(filters):
        strides = 1 if i == 0 else 2
        y = layers.Conv2D(f, 3, strides=strides, padding="same")(x)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("relu")(y)
        y = layers.Conv2D(f, 3, padding="same")(y)
        y = layers.BatchNormalization()(y)
        shortcut = x if strides == 1 else layers.Conv2D(f, 1, strides=strides, padding="same")(x)
        x = layers.Activation("relu")(layers.Add()([shortcut, y]))
    x = layers.AveragePooling2D(pool_size=int(x.shape[1]))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="resnet8")


def ds_cnn(input_shape=(20, 10, 1), classes=CLASSES, filters=24, blocks=4):
    """MLPerf Tiny KWS DS-CNN: a strided stem, depthwise-separable blocks with BatchNorm, average pool."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input(input_shape)
    x = layers.Conv2D(filters, (10, 4), strides=(2, 2), padding="same")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.Dropout(0.2)(x)
    for _ in range(blocks):
        x = layers.DepthwiseConv2D(3, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.Conv2D(filters, 1, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.Dropout(0.4)(x)
    x = layers.AveragePooling2D(pool_size=(int(x.shape[1]), int(x.shape[2])))(x)
    x = layers.Flatten()(x)
    out = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="ds_cnn")


def mobilenet_v1(input_shape=(32, 32, 3), classes=CLASSES, alpha=0.25):
    """MLPerf Tiny VWW MobileNetV1 (alpha 0.25): strided stem, 13 depthwise/pointwise pairs, GAP."""
    keras = _keras()
    layers = keras.layers
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    inp = keras.Input(input_shape)
    x = _conv_bn_relu(inp, int(32 * alpha), 3, strides=2)
    for f, s in plan:
        x = layers.DepthwiseConv2D(3, strides=s, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = _conv_bn_relu(x, int(f * alpha), 1)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="mobilenet_v1")


def fc_autoencoder(features=64, hidden=32, bottleneck=8, depth=4):
    """MLPerf Tiny AD FC autoencoder: Dense+BN+ReLU encoder and decoder around a bottleneck; the output
    reconstructs the input (its width is never a channel to prune)."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input((features,))
    x = inp
    for width in [hidden] * depth + [bottleneck] + [hidden] * depth:
        x = layers.Dense(width)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    out = layers.Dense(features)(x)
    return keras.Model(inp, out, name="fc_autoencoder")


def mobilenet_v2(input_shape=(32, 32, 3), classes=CLASSES, alpha=0.35):
    """keras.applications MobileNetV2 (inverted residuals, ReLU6), no pretrained weights."""
    keras = _keras()
    return keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=alpha, weights=None, classes=classes, include_top=True
    )


def conv1d_net(input_shape=(64, 1), classes=CLASSES, filters=(16, 32, 32)):
    """A 1-D conv net for sensor/audio series: Conv1D+BN+ReLU, strides and pooling, GAP, Dense."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input(input_shape)
    x = inp
    for i, f in enumerate(filters):
        x = layers.Conv1D(f, 5 if i == 0 else 3, strides=1 if i == 0 else 2, padding="same")(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        if i == 0:
            x = layers.MaxPooling1D(2)(x)
    x = layers.GlobalAveragePooling1D()(x)
    out = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="conv1d_net")


def unet_like(input_shape=(16, 16, 1), classes=CLASSES, filters=(8, 16, 32)):
    """A small U-Net: encoder, bottleneck, decoder with UpSampling2D + Concatenate skips, then a
    classification head (GAP + Dense) so that the digits task scores it."""
    keras = _keras()
    layers = keras.layers
    inp = keras.Input(input_shape)
    skips = []
    x = inp
    for f in filters[:-1]:
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
        skips.append(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(filters[-1], 3, padding="same", activation="relu")(x)
    for f, skip in zip(reversed(filters[:-1]), reversed(skips)):
        x = layers.UpSampling2D(2)(x)
        x = layers.Concatenate()([x, skip])
        x = layers.Conv2D(f, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    out = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inp, out, name="unet_like")


# name -> builder; all take their default (small) input shape
ARCHITECTURES = {
    "resnet8": resnet8,
    "ds_cnn": ds_cnn,
    "mobilenet_v1": mobilenet_v1,
    "fc_autoencoder": fc_autoencoder,
    "mobilenet_v2": mobilenet_v2,
    "conv1d": conv1d_net,
    "unet": unet_like,
}


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of (n, 8, 8) images to (n, h, w): enough for a learnable task."""
    rows = (np.arange(h) * img.shape[1] // h).clip(0, img.shape[1] - 1)
    cols = (np.arange(w) * img.shape[2] // w).clip(0, img.shape[2] - 1)
    return img[:, rows][:, :, cols]


def digits_task(input_shape: tuple, n: int | None = None, seed: int = 0):
    """(x_train, y_train, x_eval, y_eval) of the digits task shaped for a model input (batch excluded).

    Images (h, w, c): resized and the channel repeated; series (t, c): the image read row by row and
    resampled to t steps; vectors (f,): the flattened image resampled to f features. Labels are the
    digits; for the autoencoder they are only used to build a class-balanced split.
    """
    x, y = _digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        h, w, c = shape
        out = np.repeat(_resize(x, h, w)[..., None], c, axis=-1)
    elif len(shape) == 2:
        t, c = shape
        flat = x.reshape(len(x), -1)
        idx = (np.arange(t) * flat.shape[1] // t).clip(0, flat.shape[1] - 1)
        out = np.repeat(flat[:, idx][..., None], c, axis=-1)
    elif len(shape) == 1:
        flat = x.reshape(len(x), -1)
        idx = (np.arange(shape[0]) * flat.shape[1] // shape[0]).clip(0, flat.shape[1] - 1)
        out = flat[:, idx]
    else:
        raise ValueError(f"no digits task for input shape {shape}")
    out = out.astype(np.float32)
    if n is not None:
        out, y = out[:n], y[:n]
    split = int(len(out) * 0.75)
    return out[:split], y[:split], out[split:], y[split:]


def trained(name: str, epochs: int = 2, n: int | None = 600, seed: int = 0):
    """(model, task) for an architecture, fitted briefly on its digits task (reconstruction for the
    autoencoder) so that its weights and BatchNorm statistics are not at their initial values."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    model = ARCHITECTURES[name]()
    task = digits_task(model.inputs[0].shape[1:], n=n, seed=seed)
    x, y = task[0], task[1]
    if name == "fc_autoencoder":
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
        model.fit(x, x, epochs=epochs, batch_size=32, verbose=0)
    else:
        model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model, task
