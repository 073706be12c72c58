"""nnU-Net fold names (``--folds``), shared by training and inference (no nnU-Net import)."""

from __future__ import annotations

from ads_synth.errors import InputError

#: Five-fold cross-validation.
ALL_FOLDS = (0, 1, 2, 3, 4)


def parse_folds(folds):
    """Normalise ``--folds``: None -> 0..4; ``["all"]`` -> ``["all"]``; else sorted unique ints in 0..4."""
    if folds is None:
        return list(ALL_FOLDS)
    if isinstance(folds, (str, int)):
        folds = [folds]
    folds = [str(f) for f in folds]
    if "all" in folds:
        if len(folds) > 1:
            raise InputError("--folds: give 'all' alone (one model on all images) or fold numbers 0 to 4.")
        return ["all"]
    out = []
    for f in folds:
        if not f.isdigit() or int(f) not in ALL_FOLDS:
            raise InputError(f"--folds {f}: folds are 0 to 4 (five-fold cross-validation) or 'all'.")
        if int(f) not in out:
            out.append(int(f))
    return sorted(out)
