"""Agreement metrics against hand-computed values."""

import numpy as np
import pytest

from sleepstream.scoring import agreement, confusion_matrix


def test_confusion_matrix_ignores_unscored():
    """Epochs unscored on either side are left out of the counts."""
    cm = confusion_matrix(np.array([0, 1, -1, 2]), np.array([0, 2, 3, -1]))
    assert cm.sum() == 2
    assert cm[0, 0] == 1 and cm[1, 2] == 1


def test_agreement_golden_values():
    """Accuracy, kappa and macro-F1 match a hand computation."""
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 4])
    y_pred = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0, 4])
    m = agreement(y_true, y_pred)
    assert m["accuracy"] == pytest.approx(0.7)
    # p_e = sum(row_k * col_k) / n^2 = (3*3 + 2*2 + 4*4 + 0 + 1*1) / 100 = 0.30
    assert m["kappa"] == pytest.approx((0.7 - 0.30) / 0.70)
    # F1: W 2*2/(3+3)=0.667, N1 2*1/(2+2)=0.5, N2 2*3/(4+4)=0.75, REM 1.0; N3 absent
    assert m["macro_f1"] == pytest.approx(np.mean([4 / 6, 0.5, 0.75, 1.0]))
    assert m["per_stage_f1"]["N3"] is None


def test_agreement_rejects_length_mismatch():
    """Sequences of different length are an error, not a silent truncation."""
    with pytest.raises(ValueError, match="length mismatch"):
        agreement(np.zeros(3), np.zeros(4))
