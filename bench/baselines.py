"""Trivial baselines a federated model must beat, on raw inputs (no pretrained tower).

- majority: each enterprise predicts the most common label of its own training data;
- logistic regression on raw inputs: the frame as 16 x 16 grey pixels (256 values in
  [0, 1]) next to a hashed bag of words of the report (1,024 buckets, counts scaled by
  1/4), scikit-learn's multinomial `LogisticRegression`; its inverse regularisation C
  is chosen on the validation split from `C_GRID`. Trained per enterprise (local-only)
  and on all enterprises' data pooled (centralized), and the pooled one also with one
  modality blanked (pixels only, words only);
- label-coverage ceiling (`non_iid.coverage_ceiling`): right on every label the
  enterprise has seen, wrong on every other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from accord.participant.data import folder as datasets

PIXELS = 16
WORD_BUCKETS = 1024
C_GRID = (0.1, 1.0, 10.0)

Matrix = npt.NDArray[np.float64]


def raw_inputs(examples: Sequence[datasets.Example]) -> Matrix:
    """(n, 256 + 1024): grey pixels at 16 x 16, then the hashed words of the report."""
    from PIL import Image
    from sklearn.feature_extraction.text import HashingVectorizer

    pixels = np.stack(
        [
            np.asarray(
                Image.fromarray(e.image).convert("L").resize((PIXELS, PIXELS)), dtype=np.float64
            ).ravel()
            / 255.0
            for e in examples
        ]
    )
    words = HashingVectorizer(n_features=WORD_BUCKETS, alternate_sign=False, norm=None)
    counts = words.transform([e.text for e in examples]).toarray() / 4.0
    return np.hstack([pixels, counts])


def blank(matrix: Matrix, modality: str) -> Matrix:
    """The matrix with the pixels ("image") or the words ("text") set to zero."""
    out = matrix.copy()
    if modality == "image":
        out[:, : PIXELS * PIXELS] = 0.0
    else:
        out[:, PIXELS * PIXELS :] = 0.0
    return out


def labels_of(examples: Sequence[datasets.Example]) -> npt.NDArray[np.str_]:
    return np.array([e.label for e in examples])


def majority_accuracy(train: Sequence[datasets.Example], test: Sequence[datasets.Example]) -> float:
    """Accuracy on `test` of always predicting `train`'s most common label."""
    values, counts = np.unique(labels_of(train), return_counts=True)
    return float(np.mean(labels_of(test) == values[int(np.argmax(counts))]))


class RawLogistic:
    """Logistic regression on `raw_inputs`, C chosen on a validation set."""

    def __init__(self, fit: Matrix, fit_labels: npt.NDArray[np.str_], val: Matrix, val_labels):
        from sklearn.linear_model import LogisticRegression

        best = -1.0
        if len(np.unique(fit_labels)) < 2:
            self.constant: str | None = str(fit_labels[0])
            self.c = float("nan")
            return
        self.constant = None
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=300).fit(fit, fit_labels)
            score = float(np.mean(model.predict(val) == val_labels))
            if score > best:
                best, self.model, self.c = score, model, c

    def accuracy(self, matrix: Matrix, labels: npt.NDArray[np.str_]) -> float:
        if self.constant is not None:
            return float(np.mean(labels == self.constant))
        return float(np.mean(self.model.predict(matrix) == labels))
