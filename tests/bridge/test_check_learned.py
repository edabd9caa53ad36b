"""A learned codec stage that does not fit the split fails at validation, naming its checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed.cli import main
from tests.conftest import base_scenario


def _checkpoint(path: Path, channels: int) -> None:
    from testbed.research.common import save_checkpoint
    from testbed.research.methods.autoencoder import BottleneckDecoder, BottleneckEncoder

    enc, dec = BottleneckEncoder(channels, 8), BottleneckDecoder(channels, 8)
    state = {**{f"encoder.{k}": v for k, v in enc.state_dict().items()},
             **{f"decoder.{k}": v for k, v in dec.state_dict().items()}}
    save_checkpoint(str(path), "autoencoder", {"channels": channels, "code_channels": 8, "bits": 2}, state, {})


@pytest.mark.parametrize(("channels", "ok"), [(64, False), (128, True)])
def test_autoencoder_channels_must_match_the_split(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    channels: int, ok: bool) -> None:
    _checkpoint(tmp_path / "ae.pt", channels)
    raw = base_scenario(model={"name": "resnet18", "weights": "random", "split": "layer2"},  # 128 channels
                        codec=[{"autoencoder": {"checkpoint": "ae.pt"}}, {"quantize": {"bits": 2}}],
                        dataset={"kind": "photos", "limit": 2})
    raw["fleet"][0].pop("head")
    raw["fleet"][0].pop("encode")
    raw["fleet"][0].pop("payload")
    raw["server"].pop("service")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw))
    code = main(["validate", str(tmp_path / "s.yaml")])
    err = capsys.readouterr().err
    if ok:
        assert code == 0, err
        return
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: codec.0.autoencoder.checkpoint"), err
    assert "ae.pt" in lines[0] and "layer2" in lines[0]
