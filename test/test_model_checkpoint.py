"""Checkpoints round-trip, and every kind of bad file is refused with an error naming file and problem."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from occflow_ros.model import (
    CheckpointError,
    ModelConfig,
    OccupancyFlow,
    load_checkpoint,
    save_checkpoint,
)
from occflow_ros.model.checkpoint import FORMAT_NAME, FORMAT_VERSION

CFG = ModelConfig(c_dim=16, encoder_hidden=16, decoder_hidden=16, velocity_hidden=16,
                  encoder_blocks=1, decoder_blocks=1, velocity_blocks=1, input_points=128)


def trained_looking_model(seed: int = 0) -> OccupancyFlow:
    torch.manual_seed(seed)
    model = OccupancyFlow(CFG)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def outputs(model: OccupancyFlow) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    pts = torch.rand(1, 2, 50, 3, generator=g) - 0.5
    with torch.inference_mode():
        c_s = model.encode_shape(pts[:, 0])
        c_t, _ = model.encode_motion(pts, torch.tensor([[0.0, 0.5]]))
        occ = model.occupancy_logits(pts[:, 1], c_s, context=pts[:, 0])
        moved = model.flow(pts[:, 1], 0.0, 0.5, c_t[:, -1])
    return occ, moved


def test_round_trip_keeps_weights_config_and_provenance(tmp_path):
    model = trained_looking_model()
    path = save_checkpoint(tmp_path / "m.pt", model, training={"seed": 7, "dataset": "synthetic"},
                           extra={"step": 12})
    ckpt = load_checkpoint(path, map_location=torch.device("cpu"))
    assert ckpt.config == CFG
    assert ckpt.training == {"seed": 7, "dataset": "synthetic"}
    assert ckpt.extra == {"step": 12}
    assert "time" in ckpt.normalization and "space" in ckpt.normalization
    assert not ckpt.model.training
    for a, b in zip(outputs(model), outputs(ckpt.model)):
        assert torch.equal(a, b)
    assert ckpt.path == path


def test_existing_file_is_not_overwritten_unless_asked(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"the user's own file")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(path, trained_looking_model())
    assert path.read_bytes() == b"the user's own file"
    save_checkpoint(path, trained_looking_model(), overwrite=True)
    assert load_checkpoint(path).config == CFG
    assert list(tmp_path.iterdir()) == [path], "no temporary file left behind"


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")


def test_empty_file(tmp_path):
    (tmp_path / "e.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"e\.pt: empty file"):
        load_checkpoint(tmp_path / "e.pt")


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.05])
def test_truncated_file(tmp_path, keep):
    path = save_checkpoint(tmp_path / "m.pt", trained_looking_model())
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"cut\.pt: truncated or corrupt"):
        load_checkpoint(cut)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("model: occflow\nweights: none\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a torch checkpoint"):
        load_checkpoint(path)


def test_a_torch_file_of_another_format(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointError, match=r"other\.pt: not an occflow_ros checkpoint"):
        load_checkpoint(path)
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not an occflow_ros checkpoint"):
        load_checkpoint(path)


class _Payload:  # a pickled object: torch.load(weights_only=True) must refuse to build it
    pass


def test_pickled_objects_are_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_NAME, "obj": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load"):
        load_checkpoint(path)


def _rewrite(path, **changes):
    payload = torch.load(path, weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_wrong_format_version(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", trained_looking_model())
    _rewrite(path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        load_checkpoint(path)


def test_weights_not_matching_the_config(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", trained_looking_model())
    bigger = dict(CFG.to_dict(), decoder_hidden=32)
    _rewrite(path, model_config=bigger)
    with pytest.raises(CheckpointError, match=r"m\.pt: weights do not match.*wrong shape"):
        load_checkpoint(path)
    path2 = save_checkpoint(tmp_path / "m2.pt", trained_looking_model())
    payload = torch.load(path2, weights_only=True)
    del payload["state_dict"]["decoder.fc_out.weight"]
    torch.save(payload, path2)
    with pytest.raises(CheckpointError, match=r"missing \['decoder.fc_out.weight'\]"):
        load_checkpoint(path2)


def test_invalid_config_in_file(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", trained_looking_model())
    _rewrite(path, model_config=dict(CFG.to_dict(), c_dim=-3))
    with pytest.raises(CheckpointError, match="invalid model config: c_dim"):
        load_checkpoint(path)
    _rewrite(path, model_config=dict(CFG.to_dict(), colour="red"))
    with pytest.raises(CheckpointError, match="unknown key"):
        load_checkpoint(path)


def test_model_for_another_input_size_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", trained_looking_model())
    with pytest.raises(CheckpointError, match="trained for 128 input points.*300"):
        load_checkpoint(path, expect_input_points=300)
    assert load_checkpoint(path, expect_input_points=128).config.input_points == 128


def test_saved_file_is_a_plain_torch_zip(tmp_path):
    """The format is torch's zip container: readable by torch.load(weights_only=True) anywhere."""
    path = save_checkpoint(tmp_path / "m.pt", trained_looking_model())
    assert zipfile.is_zipfile(io.BytesIO(path.read_bytes()))
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == FORMAT_NAME and payload["format_version"] == FORMAT_VERSION


def test_a_checkpoint_from_before_fourier_features_loads_as_raw_coordinates(tmp_path):
    cfg = ModelConfig(c_dim=16, encoder_hidden=16, decoder_hidden=16, velocity_hidden=16,
                      encoder_blocks=1, decoder_blocks=1, velocity_blocks=1, fourier_octaves=0)
    model = OccupancyFlow(cfg).eval()
    path = save_checkpoint(tmp_path / "old.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["fourier_octaves"]
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.config.fourier_octaves == 0
    for a, b in zip(outputs(model), outputs(loaded.model)):
        assert torch.equal(a, b)
