"""Train the small ReLU MLPs shipped in models/ and write their box files.

    python models/train.py [NAME ...]   # needs torch and scikit-learn (pip install -e '.[dev]'); default: all

* ``digits_64x32x32.onnx``: scikit-learn's 8x8 digits, inputs in [0, 16]; the model divides by 16
  itself (a Div node that exactcomp folds). L1-regularised. Box: [0, 16]^64.
* ``mnist_784x100x100.onnx``: MNIST, 2 hidden layers of 100 (the paper's smallest size), inputs in
  [0, 1], L1-regularised. Trained on the first 8,000 images of the MNIST test set in
  ../shared/data/mnist, the last 2,000 held out. Box: [0, 1]^784.
* ``mnist_784x50x50x50.onnx``: the same data, 3 hidden layers of 50, the same L1.
* ``mnist_cnn_8x16.onnx``: the same data, a CNN: ``Conv(1→8, 3x3, stride 2, pad 1) → ReLU →
  Conv(8→16, 3x3, stride 2, pad 1) → ReLU → Flatten → Linear(784→32) → ReLU → Linear(32→10)``,
  L1-regularised so that whole channels die. Box: [0, 1]^784.
* ``mnist_resnet_tiny.onnx``: the same data, a small residual network: a stride-2 stem convolution
  (1→8), a residual block with an identity shortcut (8→8), one with a stride-2 1x1-convolution
  shortcut (8→16), then ``Linear(784→10)``; the same L1. Box: [0, 1]^784.
* ``mnist_cnn_maxpool.onnx``: the same data, a LeNet-style CNN with max pooling: ``Conv(1→8, 3x3, pad 1)
  → ReLU → MaxPool(2) → Conv(8→16, 3x3, pad 1) → ReLU → MaxPool(2) → Flatten → Linear(784→32) → ReLU →
  Linear(32→10)``; L1 weight 2e-3 (twice the others). Box: [0, 1]^784.

Exported with ``torch.onnx.export(..., dynamo=False)`` and a dynamic batch axis.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
MNIST = HERE.parent.parent / "shared" / "data" / "mnist"


def read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(root: Path = MNIST):
    images = read_idx(root / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def mlp(sizes: list[int], pre: torch.nn.Module | None = None, seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [pre] if pre is not None else []
    layers.append(torch.nn.Flatten())
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


class Scale(torch.nn.Module):
    def __init__(self, divisor: float):
        super().__init__()
        self.divisor = divisor

    def forward(self, x):
        return x / self.divisor


def cnn(seed: int = 0) -> torch.nn.Sequential:
    """The small MNIST CNN of ``mnist_cnn_8x16`` (see module doc)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def cnn_maxpool(seed: int = 0) -> torch.nn.Sequential:
    """The LeNet-style CNN of ``mnist_cnn_maxpool`` (see module doc)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


class _Block(torch.nn.Module):
    """``relu(conv2(relu(conv1(x))) + shortcut(x))``: identity, or a 1x1 convolution when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, padding=1)
        self.shortcut = torch.nn.Identity() if stride == 1 and c_in == c_out else torch.nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x):
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))


def resnet_tiny(seed: int = 0) -> torch.nn.Sequential:
    """The small residual network of ``mnist_resnet_tiny`` (see module doc)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
        _Block(8, 8, 1), _Block(8, 16, 2), torch.nn.Flatten(), torch.nn.Linear(16 * 7 * 7, 10))


def train(model, X, y, l1: float, epochs: int, lr: float = 1e-3, seed: int = 0, batch: int = 64):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    for epoch in range(epochs):
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(Xt[idx]), yt[idx])
            loss = loss + l1 * sum(p.abs().sum() for n, p in model.named_parameters() if "weight" in n)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def accuracy(model, X, y) -> float:
    with torch.no_grad():
        return float((model(torch.tensor(X)).argmax(1).numpy() == y).mean())


def export(model, example: np.ndarray, path: Path, lower: float, upper: float) -> None:
    model.eval()
    torch.onnx.export(model, (torch.tensor(example[:1]),), str(path), dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    path.with_suffix(".box.json").write_text(json.dumps({"lower": lower, "upper": upper}) + "\n")


#: MNIST models: name -> (builder, L1 weight, epochs).
MNIST_MODELS = {
    "mnist_784x100x100": (lambda: mlp([784, 100, 100, 10]), 1e-3, 20),
    "mnist_784x50x50x50": (lambda: mlp([784, 50, 50, 50, 10]), 1e-3, 20),
    "mnist_cnn_8x16": (cnn, 1e-3, 10),
    "mnist_resnet_tiny": (resnet_tiny, 1e-3, 10),
    "mnist_cnn_maxpool": (cnn_maxpool, 2e-3, 10),
}


def main(argv=None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or ["digits_64x32x32", *MNIST_MODELS]
    unknown = set(names) - {"digits_64x32x32", *MNIST_MODELS}
    if unknown:
        print(f"unknown model(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    torch.set_num_threads(2)
    if "digits_64x32x32" in names:
        from sklearn.datasets import load_digits

        digits = load_digits()
        X, y = digits.images.astype(np.float32), digits.target.astype(np.int64)
        net = train(mlp([64, 32, 32, 10], Scale(16.0)), X[:1500], y[:1500], l1=2e-4, epochs=60, seed=0)
        print(f"digits_64x32x32: held-out accuracy {accuracy(net, X[1500:], y[1500:]):.3f}")
        export(net, X, HERE / "digits_64x32x32.onnx", 0.0, 16.0)
    mnist = [n for n in names if n in MNIST_MODELS]
    if mnist and not MNIST.exists():
        print(f"MNIST not found at {MNIST}; skipping the MNIST models", file=sys.stderr)
        return 0
    if mnist:
        images, labels = load_mnist()
        Xm = images.reshape(-1, 1, 28, 28)
    for name in mnist:
        build, l1, epochs = MNIST_MODELS[name]
        net = train(build(), Xm[:8000], labels[:8000], l1=l1, epochs=epochs, seed=0)
        print(f"{name}: held-out accuracy {accuracy(net, Xm[8000:], labels[8000:]):.3f}")
        export(net, Xm, HERE / f"{name}.onnx", 0.0, 1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
