"""Fold agreement: ensemble label maps and confidence maps from the members' softmax probabilities.

The members are the folds of one segmentation model, or the folds of both paths pooled (tutorship and
adaptation on the same image). For each pixel, with ``p_f`` the softmax probabilities of member ``f`` (``F``
members) and ``p̄`` their mean:

* the ensemble label is ``ŷ = argmax_c p̄_c`` (nnU-Net's ensembling: average the probabilities);
* the **agreement** ``a = (1/F) · #{f : argmax_c p_f,c = ŷ}`` is the fraction of members voting for ``ŷ``;
* the **certainty** ``m = p̄_ŷ`` is the members' mean probability of ``ŷ``;
* the **confidence** is ``a · m`` in [0, 1]: 1 exactly when every member gives ``ŷ`` probability 1, lower where
  members vote differently or hesitate. A single member's confidence is its probability of its own argmax.

The 8-bit map stores ``round(255 · confidence)``: 255 where all members agree with certainty.

:class:`EnsembleStats` keeps only the per-class probability sums and vote counts, so members are added one at a
time (memory of one member) and two paths' statistics pool by addition after being resampled to one grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EnsembleStats:
    """Running statistics of ensemble members on one pixel grid.

    Attributes
    ----------
    prob_sum : numpy.ndarray
        ``(C, H, W)`` float32, sum of the members' class probabilities.
    votes : numpy.ndarray
        ``(C, H, W)`` uint16, number of members whose argmax is each class.
    n_members : int
    """

    prob_sum: np.ndarray
    votes: np.ndarray
    n_members: int

    @classmethod
    def empty(cls, n_classes, shape):
        """No members yet, on a grid of ``shape`` (H, W)."""
        return cls(np.zeros((n_classes, *shape), np.float32), np.zeros((n_classes, *shape), np.uint16), 0)

    @classmethod
    def from_probabilities(cls, probabilities):
        """Statistics of members ``(F, C, H, W)``."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        stats = cls.empty(probabilities.shape[1], probabilities.shape[2:])
        for member in probabilities:
            stats.add(member)
        return stats

    def add(self, probabilities):
        """Add one member's probabilities ``(C, H, W)``; return its own label map (uint8 argmax)."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        if probabilities.shape != self.prob_sum.shape:
            raise ValueError(f"member probabilities {probabilities.shape} do not match {self.prob_sum.shape}")
        self.prob_sum += probabilities
        label = np.argmax(probabilities, axis=0)
        for c in range(self.votes.shape[0]):
            self.votes[c] += label == c
        self.n_members += 1
        return label.astype(np.uint8)

    @property
    def shape(self):
        return self.prob_sum.shape[1:]

    def mean_probabilities(self) -> np.ndarray:
        """``(C, H, W)`` mean probability over members."""
        self._check()
        return self.prob_sum / self.n_members

    def resized(self, shape):
        """The statistics on another grid: probability sums linear, vote counts nearest neighbour."""
        from ads_synth.data.resample import resize_to

        if tuple(shape) == tuple(self.shape):
            return EnsembleStats(self.prob_sum.copy(), self.votes.copy(), self.n_members)
        return EnsembleStats(resize_to(self.prob_sum, shape, order=1).astype(np.float32),
                             resize_to(self.votes, shape, order=0), self.n_members)

    def pooled(self, other):
        """Both ensembles' members as one ensemble (same grid and classes)."""
        if other.prob_sum.shape != self.prob_sum.shape:
            raise ValueError(f"cannot pool statistics on grids {self.prob_sum.shape} and {other.prob_sum.shape}")
        return EnsembleStats(self.prob_sum + other.prob_sum, self.votes + other.votes,
                             self.n_members + other.n_members)

    def _check(self):
        if self.n_members < 1:
            raise ValueError("no ensemble members")


def label_and_confidence(stats):
    """Ensemble label map and confidence (see the module docstring).

    Parameters
    ----------
    stats : EnsembleStats

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        uint8 label map ``(H, W)`` (the class index) and float32 confidence ``(H, W)`` in [0, 1].
    """
    stats._check()
    height = stats.prob_sum.shape[1]
    label = np.empty(stats.shape, np.uint8)
    confidence = np.empty(stats.shape, np.float32)
    rows = max(1, _CHUNK_PIXELS // max(1, stats.prob_sum.shape[2]))  # row blocks: no image-sized int64 temporaries
    for y in range(0, height, rows):
        prob_sum, votes = stats.prob_sum[:, y:y + rows], stats.votes[:, y:y + rows]
        picked = np.argmax(prob_sum, axis=0)[None]
        certainty = np.take_along_axis(prob_sum, picked, axis=0)[0] / stats.n_members
        agreement = np.take_along_axis(votes, picked, axis=0)[0].astype(np.float32) / stats.n_members
        label[y:y + rows] = picked[0]
        confidence[y:y + rows] = np.clip(agreement * certainty, 0.0, 1.0)
    return label, confidence


#: Pixels per row block of :func:`label_and_confidence`.
_CHUNK_PIXELS = 1 << 22


def fold_agreement(probabilities):
    """Label map and confidence of members ``(F, C, H, W)`` (:func:`label_and_confidence`)."""
    return label_and_confidence(EnsembleStats.from_probabilities(probabilities))


def confidence_to_uint8(confidence) -> np.ndarray:
    """``round(255 · confidence)`` as uint8 (the ``_seg-confidence.png`` values)."""
    return np.rint(np.clip(np.asarray(confidence, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
