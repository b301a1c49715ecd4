"""gentool from Python: train a one-class MAF, score images of your own, sample, show outliers.

    python examples/python_api.py --digit 8 --out runs/example-maf8

The command line does the training (in this process, through ``gentool.cli.main``); the
rest uses the trained model as a Python object from ``gentool.api.load_model``:

- ``model.score_batch(images)`` gives each image's NLL in nats and bits per dimension
  (images: a float tensor [N, C, H, W] in [0, 1]; another size or channel count is
  prepared as the training images were, and pixels are read on the data's levels);
- ``model.sample(n, temperature)`` draws new images, on the data's levels;
- any scikit-learn metric takes the scores from there.

It writes ``outliers.png`` into the run folder: the 16 test images the model finds least
like the digit (top rows) and the 16 it finds most like it (bottom rows), and
``samples.png``, 16 samples at temperature 0.8. Offline: digits ship with scikit-learn.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from torchvision.utils import save_image

from gentool.api import load_model
from gentool.cli import main as gentool


def test_images() -> tuple[torch.Tensor, torch.Tensor]:
    """gentool's digits test split (the same seeded stratified 20 %), as [N, 1, 8, 8] in [0, 1]."""
    digits = load_digits()
    index = torch.arange(len(digits.target)).numpy()
    _, test = train_test_split(index, test_size=0.2, stratify=digits.target, random_state=0)
    images = torch.tensor(digits.images[test], dtype=torch.float32)[:, None] / 16.0
    return images, torch.tensor(digits.target[test])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digit", type=int, default=8, help="the normal class, 0 to 9")
    parser.add_argument("--out", type=Path, default=Path("runs/example-maf"))
    parser.add_argument("--max-steps", type=int, default=None, help="stop training early")
    args = parser.parse_args()

    train = ["train", "maf", "--data", "digits", "--normal-class", str(args.digit)]
    train += ["--out", str(args.out), "--quiet"]
    if args.max_steps:
        train += ["--max-steps", str(args.max_steps)]
    if gentool(train) != 0:
        raise SystemExit("training failed")

    model = load_model("maf", args.out, "cpu")  # the best checkpoint, in eval mode
    torch.manual_seed(0)  # scoring draws dequantisation noise
    images, labels = test_images()
    nll = model.score_batch(images)["nll"]
    anomalous = (labels != args.digit).int()
    normal, others = nll[anomalous == 0].median(), nll[anomalous == 1].median()
    print(f"digit {args.digit} as normal: AUROC {roc_auc_score(anomalous, nll):.4f} on "
          f"{len(labels)} test images; median NLL {normal:.1f} nats for the normal images, "
          f"{others:.1f} for the others")  # fmt: skip

    order = torch.argsort(nll, descending=True)
    grid = torch.cat([images[order[:16]], images[order[-16:]]])
    save_image(grid, args.out / "outliers.png", nrow=8, padding=1, pad_value=0.5)
    save_image(model.sample(16, temperature=0.8), args.out / "samples.png", nrow=8)
    print(f"wrote {args.out / 'outliers.png'} and {args.out / 'samples.png'}")


if __name__ == "__main__":
    main()
