#!/usr/bin/env python3
"""Builds datasets of the MNIST family from MNIST itself, as IDX files Flotilla reads, to check
that a config tuned on MNIST does not diverge on data it was not tuned on.

  inverted/  every pixel v becomes 255 - v (white digits on black become black on white)
  affine/    each image rotated by U(-15, 15) degrees, scaled by U(0.9, 1.1) and shifted by
             U(-2, 2) pixels per axis about its centre (bilinear sampling), then Gaussian
             noise of standard deviation 20 grey levels added and clipped to 0..255

Labels are copied unchanged. Draws come from numpy's PCG64 seeded with SEED (default 1), one
stream for the training images and one for the test images, so the output is a function of
the input and the seed.

Usage: mnist_variants.py MNIST_DIR OUT_DIR [SEED]
  MNIST_DIR holds train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz),
  t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz).
  Writes OUT_DIR/inverted/ and OUT_DIR/affine/ with the same four names, gzip-compressed; use
  one with `flotilla run mnist --set data.path=OUT_DIR/affine`.
"""

import gzip
import os
import sys

import numpy as np

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def open_idx(folder, name):
    for candidate, opener in ((name + ".gz", gzip.open), (name, open)):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            with opener(path, "rb") as f:
                return f.read()
    sys.exit(f"mnist_variants: {os.path.join(folder, name)}(.gz) not found")


def parse_idx(data, name):
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        sys.exit(f"mnist_variants: {name} is not an unsigned-byte IDX file")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        sys.exit(f"mnist_variants: {name} holds {body.size} bytes for dimensions {shape}")
    return body.reshape(shape)


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    # mtime 0: the same input and seed give the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def affine(images, rng):
    n, h, w = images.shape
    angle = np.deg2rad(rng.uniform(-15.0, 15.0, n))
    scale = rng.uniform(0.9, 1.1, n)
    shift = rng.uniform(-2.0, 2.0, (n, 2))
    noise = rng.normal(0.0, 20.0, images.shape)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    out = np.empty(images.shape, dtype=np.float64)
    for i in range(n):
        # Inverse map: for each output pixel, where it comes from in the input.
        c, s = np.cos(angle[i]) / scale[i], np.sin(angle[i]) / scale[i]
        dy, dx = ys - cy - shift[i, 0], xs - cx - shift[i, 1]
        sy = c * dy - s * dx + cy
        sx = s * dy + c * dx + cx
        y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
        fy, fx = sy - y0, sx - x0
        img = images[i].astype(np.float64)

        def at(y, x):
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            return np.where(inside, img[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], 0.0)

        out[i] = (
            at(y0, x0) * (1 - fy) * (1 - fx)
            + at(y0, x0 + 1) * (1 - fy) * fx
            + at(y0 + 1, x0) * fy * (1 - fx)
            + at(y0 + 1, x0 + 1) * fy * fx
        )
    return np.clip(np.rint(out + noise), 0, 255).astype(np.uint8)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) == 4 else 1
    streams = dict(zip(NAMES, np.random.SeedSequence(seed).spawn(len(NAMES))))
    for variant in ("inverted", "affine"):
        os.makedirs(os.path.join(dst, variant), exist_ok=True)
    for split, (images_name, labels_name) in NAMES.items():
        images = parse_idx(open_idx(src, images_name), images_name)
        labels = parse_idx(open_idx(src, labels_name), labels_name)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            sys.exit(f"mnist_variants: {images_name} and {labels_name} do not pair up")
        variants = {
            "inverted": 255 - images,
            "affine": affine(images, np.random.Generator(np.random.PCG64(streams[split]))),
        }
        for variant, data in variants.items():
            folder = os.path.join(dst, variant)
            write_idx(os.path.join(folder, images_name + ".gz"), data)
            write_idx(os.path.join(folder, labels_name + ".gz"), labels)
            print(f"{variant}/{images_name}.gz: {data.shape[0]} images")


if __name__ == "__main__":
    main()
