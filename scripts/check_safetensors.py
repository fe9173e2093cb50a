#!/usr/bin/env python3
"""Checks a Flotilla MLP checkpoint from Python: loads MODEL.safetensors with the
`safetensors` and `numpy` packages (PyTorch names and layouts: fcN.weight is [out, in]),
runs the MLP's forward pass in numpy (ReLU between layers, none after the last) on the
rows of INPUTS.json, and compares with Flotilla's logits in LOGITS.json.

Usage: check_safetensors.py MODEL.safetensors INPUTS.json LOGITS.json [TOLERANCE]
Exit 0 when every logit agrees within TOLERANCE (default 1e-5), 1 otherwise.
"""

import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def main() -> int:
    model, inputs, logits = sys.argv[1:4]
    tolerance = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-5
    with safe_open(model, framework="numpy") as f:
        spec = f.metadata().get("flotilla_spec", "")
    if not spec.startswith("mlp:"):
        print(f"{model}: spec {spec!r} is not an MLP", file=sys.stderr)
        return 1
    tensors = load_file(model)
    layers = len(spec[4:].split("-")) - 1
    x = np.asarray(json.load(open(inputs)), dtype=np.float32)
    for i in range(1, layers + 1):
        x = x @ tensors[f"fc{i}.weight"].T + tensors[f"fc{i}.bias"]
        if i < layers:
            x = np.maximum(x, 0.0)
    expected = np.asarray(json.load(open(logits)), dtype=np.float32)
    diff = float(np.max(np.abs(x - expected)))
    print(f"{model}: {spec}, {x.shape[0]} samples, max |numpy - flotilla| = {diff:.3g}")
    return 0 if diff <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
