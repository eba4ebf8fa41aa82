"""The explorer's models and Viewer classes, driven through their params (no browser)."""

import numpy as np
import pytest
from peers import import_peer

import_peer("panel")
import_peer("holoviews")

from gplode.app.model import DatasetModel, DecayModel, fit_slopes  # noqa: E402

FAST = dict(max_radial=2, max_angular=3, n_points=24)  # monomial basis: ~0.3 s per calculator


def test_fitted_slopes_follow_minus_p_plus_l():
    model = DecayModel(exponent=2.5, separation_range=(5.0, 60.0), **FAST)
    assert model.error == ""
    # corrections to the d^-(p+l) law are O((r0/d)^2) ≈ 3e-3 over the fitted tail
    np.testing.assert_allclose(model.curves.fitted, -(2.5 + np.arange(4)), atol=0.02)
    np.testing.assert_allclose(model.curves.reference, -(2.5 + np.arange(4)))
    # beyond the pair functions' switch distance the series is the computed value (~1e-10)
    far = model.curves.distances > 20
    np.testing.assert_allclose(model.curves.asymptotic[far], model.curves.norms[far], rtol=1e-6)


def test_curves_change_with_exponent_and_p0_has_no_series():
    model = DecayModel(exponent=1.0, **FAST)
    before = model.curves.norms.copy()
    model.exponent = 3.0
    assert not np.allclose(before, model.curves.norms)
    model.exponent = 0.0
    assert model.error == "" and model.curves.asymptotic is None and model.curves.reference is None


def test_separation_only_updates_snapshot():
    model = DecayModel(**FAST)
    curves = model.curves
    model.separation = 12.0
    assert model.curves is curves  # the curves were not recomputed
    assert model.snapshot.separation == 12.0
    assert model.snapshot.coefficients.shape == (16, 3)


def test_s22_dimer_and_equal_species():
    model = DecayModel(system="S22 dimer", s22_name="Water_dimer", **FAST)
    assert model.error == "" and np.all(np.isfinite(model.curves.fitted))
    model.param.update(system="two atoms", center_species="H", neighbor_species="H")
    # the centre's own l = 0 density is excluded: |c_0| decays like d^-p, no constant floor
    assert model.curves.fitted[0] == pytest.approx(-1.0, abs=0.02)


def test_bad_settings_and_files_become_messages(tmp_path):
    model = DecayModel(**FAST)
    model.smearing = 0.0
    assert "smearing" in model.error and model.curves is None
    model.smearing = 1.0
    assert model.error == "" and model.curves is not None
    model.file_path = str(tmp_path / "missing.xyz")
    model.system = "file"
    assert "no such file" in model.error
    bad = tmp_path / "bad.xyz"
    bad.write_text("this is not xyz\n")
    model.file_path = str(bad)
    assert "could not read" in model.error
    dataset = DatasetModel(source="file", file_data=b"garbage", file_name="x.extxyz")
    assert dataset.compute() is None and "could not read" in dataset.error


def test_upload_of_two_fragments(tmp_path):
    import ase
    import ase.io

    path = tmp_path / "pair.extxyz"
    ase.io.write(path, [ase.Atoms("OH", positions=[[0, 0, 0], [0, 0, 1]]), ase.Atoms("Ne")])
    model = DecayModel(system="file", file_data=path.read_bytes(), file_name="pair.extxyz", **FAST)
    assert model.error == "" and model.snapshot.symbols == ["O", "H", "Ne"]


def test_dataset_map_progress_and_selection():
    model = DatasetModel(max_radial=2, max_angular=2, batch_size=40)
    steps = list(model.iter_compute())
    assert steps[-1] == 1.0 and len(steps) >= 4  # progress reported per batch
    result = model.result
    assert result.pca.shape == (110, 2) and np.all(np.isfinite(result.pca))
    assert set(result.properties) == {"interaction_energy", "distance_factor", "n_atoms"}
    assert result.channel_norms.shape == (110, len(result.neighbor_types), 3, 3)


def test_viewers_render_and_respond():
    from gplode.app import create_app
    from gplode.app.views import DatasetExplorer, DecayExplorer

    create_app()
    decay = DecayExplorer(model=DecayModel(**FAST))
    decay.__panel__()
    decay._curves.get_root()
    assert "fitted slope" in decay._slopes.object
    decay.model.exponent = 2.0
    assert "-2.0" in decay._slopes.object  # the table follows p
    dataset = DatasetExplorer(model=DatasetModel(max_radial=1, max_angular=1, batch_size=60))
    dataset.__panel__()
    dataset.model.compute()
    dataset._on_select([3])
    assert dataset.model.selected == 3 and "Selected" in dataset._summary.object


def test_fit_slopes_of_a_power_law():
    d = np.geomspace(1, 100, 30)
    np.testing.assert_allclose(fit_slopes(d, np.c_[d**-2.0, 3 * d**-4.5]), [-2.0, -4.5])
