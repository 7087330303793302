"""Linear probes: agreement with scikit-learn's logistic regression, per-layer results, hygiene, errors."""

from __future__ import annotations

import pytest
import torch

import nbexplain as nx
from nbexplain.core.feature_space.probes import fit_linear_probe
from nbexplain.zoo import cnn, mlp


def test_probe_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    data = nx.data.digits()
    xtr, ytr = data.x_train.reshape(len(data.x_train), -1)[:700], data.y_train[:700]
    xte, yte = data.x_test.reshape(len(data.x_test), -1), data.y_test
    fit = fit_linear_probe(xtr, ytr, xte, yte, l2=1e-3, max_iter=200)
    scaler = StandardScaler().fit(xtr.numpy())
    # sklearn minimises ½‖W‖² + C Σ loss; ours mean(loss) + l2‖W‖² → C = 1 / (2 · l2 · n).
    clf = LogisticRegression(C=1 / (2 * 1e-3 * len(xtr)), max_iter=500)
    clf.fit(scaler.transform(xtr.numpy()), ytr.numpy())
    theirs = clf.score(scaler.transform(xte.numpy()), yte.numpy())
    assert fit.test_accuracy == pytest.approx(theirs, abs=0.02)
    assert fit.test_accuracy > 0.9
    assert fit.train_accuracy >= fit.test_accuracy - 0.01


def test_separable_and_random_labels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 6, generator=g)
    y = (x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 1.0]) > 0).long()
    assert fit_linear_probe(x[:300], y[:300], x[300:], y[300:]).test_accuracy > 0.95
    noise = torch.randint(0, 2, (400,), generator=g)
    assert fit_linear_probe(x[:300], noise[:300], x[300:], noise[300:]).test_accuracy < 0.7


def test_probe_accuracy_per_layer_and_hygiene():
    data = nx.data.digits()
    net = cnn(image_size=8, width=8, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    train = (data.x_train[:500], data.y_train[:500])
    acc = nx.probe_accuracy(net, train, data.test, max_iter=30)
    assert list(acc) == ["conv1", "conv2", "fc1", "out"]
    assert all(0.0 <= a <= 1.0 for a in acc.values())
    assert acc["conv2"] > 0.5  # random conv features of digits are still fairly decodable
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    flat = nx.probe_accuracy(net, train, data.test, layers=["conv1"], conv="flatten", max_iter=20)
    assert set(flat) == {"conv1"}


def test_bad_inputs():
    net = mlp(4, (3,))
    x, y = torch.randn(10, 4), torch.randint(0, 2, (10,))
    with pytest.raises(TypeError, match="pair"):
        nx.probe_accuracy(net, x, (x, y))
    with pytest.raises(ValueError, match="samples"):
        nx.probe_accuracy(net, (x, y[:5]), (x, y))
    with pytest.raises(TypeError, match="integer"):
        nx.probe_accuracy(net, (x, y.float()), (x, y))
    with pytest.raises(ValueError, match="conv"):
        nx.probe_accuracy(net, (x, y), (x, y), conv="channels")
    with pytest.raises(ValueError, match="Unknown layer"):
        nx.probe_accuracy(net, (x, y), (x, y), layers=["fc9"])
    with pytest.raises(ValueError, match="non-finite"):
        fit_linear_probe(torch.full((4, 2), float("nan")), torch.zeros(4, dtype=torch.long), name="layer 'fc1'")
