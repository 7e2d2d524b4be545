"""Write the MNIST inputs the README's domain examples start from (not committed: derived from the data).

    python models/domains.py [OUT_DIR]     # default: mnist_domains/ in the current directory

Reads ``../shared/data/mnist`` like ``models/train.py`` and writes, as ``(count, 1, 28, 28)`` float32
arrays in [0, 1]:

* ``test_images.npy``: the first four held-out images (indices 8000-8003, never used for training),
  ``test_image_0.npy`` the first of them alone;
* ``digit_0.npy``, ``digit_1.npy``: the training images (the first 8,000) of the digits 0 and 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import MNIST, load_mnist  # noqa: E402


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Path(argv[0] if argv else "mnist_domains")
    if not MNIST.exists():
        print(f"MNIST not found at {MNIST}", file=sys.stderr)
        return 2
    images, labels = load_mnist()
    images = images.reshape(-1, 1, 28, 28)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "test_images.npy", images[8000:8004])
    np.save(out / "test_image_0.npy", images[8000:8001])
    for digit in (0, 1):
        np.save(out / f"digit_{digit}.npy", images[:8000][labels[:8000] == digit])
    print(f"wrote {out}/test_images.npy, test_image_0.npy, digit_0.npy, digit_1.npy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
