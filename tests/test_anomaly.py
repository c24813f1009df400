import numpy as np
import pytest
import torch
from sklearn import metrics

from aecourse import anomaly
from aecourse.models import ConvAE, ConvVAE

G = np.random.default_rng(0)
SCORES = torch.from_numpy(np.concatenate([G.normal(0, 1, 300), G.normal(1.5, 1, 100)]))
LABELS = torch.cat([torch.zeros(300, dtype=torch.bool), torch.ones(100, dtype=torch.bool)])


def test_auroc_matches_scikit_learn_with_and_without_ties():
    assert anomaly.auroc(SCORES, LABELS) == pytest.approx(metrics.roc_auc_score(LABELS, SCORES))
    tied = SCORES.round()
    assert anomaly.auroc(tied, LABELS) == pytest.approx(metrics.roc_auc_score(LABELS, tied))
    assert anomaly.auroc(torch.tensor([1.0, 2, 3, 4]), torch.tensor([0, 0, 1, 1])) == 1.0


def test_roc_curve_matches_scikit_learn():
    fpr, tpr, thresholds = anomaly.roc_curve(SCORES, LABELS)
    sk_fpr, sk_tpr, _ = metrics.roc_curve(LABELS, SCORES, drop_intermediate=False)
    np.testing.assert_allclose(fpr.numpy(), sk_fpr, atol=1e-6)
    np.testing.assert_allclose(tpr.numpy(), sk_tpr, atol=1e-6)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    area = np.trapezoid(tpr.numpy(), fpr.numpy()) if hasattr(np, "trapezoid") else np.trapz(tpr.numpy(), fpr.numpy())
    assert area == pytest.approx(anomaly.auroc(SCORES, LABELS), abs=1e-6)


def test_confusion_counts_by_hand_including_ties():
    scores = torch.tensor([0.1, 0.5, 0.5, 0.9, 0.2, 0.7])
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    assert anomaly.confusion_counts(scores, labels, 0.5) == {"tp": 2, "fp": 0, "tn": 3, "fn": 1}
    assert anomaly.confusion_counts(scores, labels, 0.15) == {"tp": 3, "fp": 2, "tn": 1, "fn": 0}


def test_confusion_counts_agree_with_the_roc_curve():
    fpr, tpr, thresholds = anomaly.roc_curve(SCORES, LABELS)
    for k in (1, 50, 200):
        counts = anomaly.confusion_counts(SCORES, LABELS, float(thresholds[k]))
        assert counts["tp"] / 100 == pytest.approx(tpr[k].item()) and counts["fp"] / 300 == pytest.approx(fpr[k].item())


def _best_by_brute_force(scores, is_anomaly, max_fpr):
    """Every candidate threshold tried: the most anomalies caught within the budget, and the lowest such."""
    normal, anomalous = scores[~is_anomaly], scores[is_anomaly]
    candidates = sorted({float(v) for v in scores} | {float(scores.min()) - 1})
    within = [t for t in candidates if (normal > t).sum().item() <= max_fpr * len(normal) + 1e-9]
    best = max((anomalous > t).sum().item() for t in within)
    return min(t for t in within if (anomalous > t).sum().item() == best)


@pytest.mark.parametrize("max_fpr", [0.0, 0.01, 0.05, 0.29, 0.5])
def test_threshold_for_fpr_is_the_best_threshold_found_by_brute_force(max_fpr):
    g = np.random.default_rng(1)
    for n, rounding in ((100, None), (37, 1), (400, 0)):
        scores = torch.from_numpy(np.concatenate([g.normal(0, 1, n), g.normal(1.5, 1, n // 3)]))
        scores = scores if rounding is None else scores.round(decimals=rounding)
        labels = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n // 3, dtype=torch.bool)])
        t = anomaly.threshold_for_fpr(scores, labels, max_fpr)
        assert t == _best_by_brute_force(scores, labels, max_fpr)
        assert (scores[~labels] > t).sum().item() <= max_fpr * n + 1e-9


def test_threshold_for_fpr_needs_no_anomaly_and_flags_that_share_of_new_normal_images():
    normal = torch.from_numpy(G.normal(size=20_000))
    t = anomaly.threshold_for_fpr(normal[:10_000], torch.zeros(10_000, dtype=torch.bool), 0.05)
    assert (normal[:10_000] > t).sum().item() == 500
    assert (normal[10_000:] > t).double().mean().item() == pytest.approx(0.05, abs=0.007)
    with pytest.raises(ValueError, match="below 1"):
        anomaly.threshold_for_fpr(normal, torch.zeros(20_000, dtype=torch.bool), 5)
    with pytest.raises(ValueError, match="needs normal images"):
        anomaly.threshold_for_fpr(normal[:3], torch.ones(3, dtype=torch.bool), 0.05)


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        anomaly.auroc(torch.zeros(3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="both normal"):
        anomaly.roc_curve(torch.zeros(3), torch.zeros(3))


def test_anomaly_scores_are_per_image_reconstruction_errors():
    torch.manual_seed(0)
    x = torch.rand(7, 1, 28, 28)
    ae, vae = ConvAE(4, channels=(8, 16)), ConvVAE(4, channels=(8, 16))
    with torch.no_grad():
        assert torch.allclose(anomaly.anomaly_scores(ae, x, batch_size=3), ((ae(x) - x) ** 2).flatten(1).sum(1))
        assert torch.allclose(anomaly.anomaly_scores(vae, x), ((vae.reconstruct(x) - x) ** 2).flatten(1).sum(1))
