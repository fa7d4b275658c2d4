"""Significance tests against hand-worked values and scipy values (computed once, hard-coded)."""
import math

import numpy as np
import pytest

from advrec.metrics import betainc, paired_ttest, t_sf_two_sided, wilcoxon


@pytest.mark.parametrize(
    "a, b, x, want",  # scipy.special.betainc
    [
        (2.5, 1.5, 0.4, 0.17392765793651),
        (10, 0.5, 0.95, 0.31715157546554495),
        (0.5, 0.5, 0.01, 0.06376856085851985),
        (300, 0.5, 0.999, 0.438654268870091),
    ],
)
def test_betainc_matches_scipy(a, b, x, want):
    assert betainc(a, b, x) == pytest.approx(want, rel=1e-10)


def test_betainc_closed_forms():
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1/2, 1/2) = (2/pi) asin(sqrt x)
    assert betainc(1, 1, 0.3) == pytest.approx(0.3, rel=1e-13)
    assert betainc(3, 1, 0.5) == pytest.approx(0.125, rel=1e-13)
    assert betainc(0.5, 0.5, 0.25) == pytest.approx(2 / math.pi * math.asin(0.5), rel=1e-12)
    assert betainc(2, 3, 0.0) == 0.0 and betainc(2, 3, 1.0) == 1.0
    with pytest.raises(ValueError, match="x"):
        betainc(1, 1, 1.5)


def test_t_distribution_closed_forms():
    # df = 1 (Cauchy): P(|T| >= t) = 1 - (2/pi) atan t; df = 2: 1 - t / sqrt(2 + t^2)
    assert t_sf_two_sided(1.7, 1) == pytest.approx(1 - 2 / math.pi * math.atan(1.7), rel=1e-12)
    assert t_sf_two_sided(-2.2, 2) == pytest.approx(1 - 2.2 / math.sqrt(2 + 2.2**2), rel=1e-12)
    assert t_sf_two_sided(0.0, 7) == 1.0


def test_paired_ttest_hand_worked():
    # d = [1, 2, 3]: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3, df = 2
    t, p = paired_ttest([1, 2, 3], [0, 0, 0])
    assert t == pytest.approx(2 * math.sqrt(3), rel=1e-12)
    assert p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-12)
    assert p == pytest.approx(0.07417990022744854, rel=1e-10)  # scipy.stats.ttest_rel
    t2, p2 = paired_ttest([0, 0, 0], [1, 2, 3])
    assert t2 == pytest.approx(-t) and p2 == pytest.approx(p)


A = np.array([0.31, 0.12, 0.55, 0.47, 0.08, 0.91, 0.33, 0.27, 0.64, 0.50, 0.19, 0.72])
B = np.array([0.28, 0.15, 0.49, 0.47, 0.02, 0.85, 0.40, 0.21, 0.60, 0.41, 0.19, 0.70])
I = np.arange(500)
TIED_A = np.round(np.sin(I * 1.3), 1)  # many ties and zero differences
TIED_B = np.round(np.sin(I * 1.3 + 0.05) + 0.05 * np.cos(I * 0.7), 1)


def test_paired_ttest_matches_scipy():
    t, p = paired_ttest(A, B)
    assert t == pytest.approx(2.034988076276674, rel=1e-12)
    assert p == pytest.approx(0.06667652124756969, rel=1e-9)
    t, p = paired_ttest(TIED_A, TIED_B)
    assert t == pytest.approx(-0.41973780884577205, rel=1e-12)
    assert p == pytest.approx(0.6748576558130663, rel=1e-9)


def test_paired_ttest_degenerate():
    assert all(math.isnan(x) for x in paired_ttest([1, 2], [1, 2]))
    assert paired_ttest([2, 3], [1, 2]) == (math.inf, 0.0)
    with pytest.raises(ValueError, match="at least 2"):
        paired_ttest([1], [2])


def test_wilcoxon_hand_worked():
    # d = [1, -2, 3, 4, 0]: zero dropped, ranks 1..4, W+ = 8, W- = 2 -> W = 2;
    # n = 4: mean 5, var 4*5*9/24 = 7.5, z = -3 / sqrt(7.5)
    w, p = wilcoxon([1, -2, 3, 4, 0], [0] * 5)
    assert w == 2.0
    assert p == pytest.approx(math.erfc(3 / math.sqrt(7.5) / math.sqrt(2)), rel=1e-12)
    assert p == pytest.approx(0.27332167829229814, rel=1e-12)  # scipy, zero_method="wilcox"
    # d = [1, -1, 2, 2, 2]: ranks 1.5, 1.5, 4, 4, 4 -> W+ = 13.5, W- = 1.5;
    # var = 5*6*11/24 - ((2^3 - 2) + (3^3 - 3))/48 = 13.125, z = (1.5 - 7.5) / sqrt(13.125)
    w, p = wilcoxon([1, -1, 2, 2, 2], [0] * 5)
    assert w == 1.5
    assert p == pytest.approx(math.erfc(6 / math.sqrt(13.125) / math.sqrt(2)), rel=1e-12)
    assert p == pytest.approx(0.09768995934615686, rel=1e-12)


def test_wilcoxon_matches_scipy():
    w, p = wilcoxon(A, B)
    assert w == 12.0 and p == pytest.approx(0.11389331062736277, rel=1e-12)
    w, p = wilcoxon(TIED_A, TIED_B)
    assert w == 10295.0 and p == pytest.approx(0.8446422555963299, rel=1e-12)


def test_wilcoxon_all_zero_and_bad_arguments():
    assert all(math.isnan(x) for x in wilcoxon([1, 2], [1, 2]))
    with pytest.raises(ValueError, match="same length"):
        wilcoxon([1, 2], [1])
    with pytest.raises(ValueError, match="same length"):
        paired_ttest([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        paired_ttest([1, np.nan], [1, 2])
