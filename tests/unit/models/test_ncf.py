"""NeuMF pretraining (He et al. 2017, section 3.4.1) without Spark: the fused output layer and params.

The fused model must compute sigmoid(alpha * z_gmf + (1 - alpha) * z_mlp), where z are the pretrained
halves' logits: that is the paper's definition, checked here on the models' own predictions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recflow.models.ncf import NcfParams, _fuse_output, build_models


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def test_fused_output_mixes_the_halves_logits(tmp_path: Path) -> None:
    import keras

    params = NcfParams(gmf_dim=4, mlp_layers=(8, 4), pretrain_epochs=1, seed=3)
    models = build_models(n_users=5, n_items=7, params=params)
    rng = np.random.default_rng(0)
    for name in ("gmf_out", "mlp_out"):  # stand-ins for pretrained output layers
        layer = models[name.split("_")[0]].get_layer(name)
        layer.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
    _fuse_output(models, alpha=0.5)
    x = {"user": np.repeat(np.arange(5, dtype=np.int32), 7), "item": np.tile(np.arange(7, dtype=np.int32), 5)}
    gmf, mlp, neumf = (models[m].predict(x, verbose=0).ravel().astype(np.float64) for m in ("gmf", "mlp", "neumf"))
    expected = 1 / (1 + np.exp(-(0.5 * _logit(gmf) + 0.5 * _logit(mlp))))
    np.testing.assert_allclose(neumf, expected, rtol=1e-4, atol=1e-6)
    # the saved NeuMF holds only stock layers: it loads in safe mode and predicts the same
    models["neumf"].save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0).ravel(), neumf, rtol=1e-5)


def test_pretrained_halves_share_neumf_embeddings() -> None:
    models = build_models(n_users=3, n_items=4, params=NcfParams(gmf_dim=2, mlp_layers=(4, 2)))
    neumf_weights = {id(w) for w in models["neumf"].weights}
    for half in ("gmf", "mlp"):
        own = [w for w in models[half].weights if id(w) not in neumf_weights]
        assert len(own) == 2, f"{half} should add only its output kernel and bias, got {[w.path for w in own]}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [({"pretrain_epochs": -1}, "pretraining settings"), ({"finetune_learning_rate": 0.0}, "pretraining settings")],
)
def test_bad_pretraining_params(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NcfParams.from_dict(raw)  # type: ignore[arg-type]
