"""The image-denoising example runs end to end on the real image and actually denoises."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT.parent / "shared" / "data" / "images" / "horse.png"


@pytest.mark.skipif(not IMAGE.exists(), reason="../shared/data/images/horse.png is absent")
def test_denoise_image_example(tmp_path):
    spec = importlib.util.spec_from_file_location("denoise", ROOT / "examples" / "denoise_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.main(["--step", "4", "--max-iter", "30", "--out", str(tmp_path)])
    assert (tmp_path / "denoise_image.png").stat().st_size > 0
    assert figures["noisy_error"] == pytest.approx(0.1, abs=0.02)
    # MAP and marginal decodings both remove most of the flipped pixels ...
    assert figures["min_sum_error"] < figures["noisy_error"] / 2
    assert figures["marginal_error"] < figures["noisy_error"] / 2
    # ... and the decoded configuration has lower energy than the noisy observation.
    assert figures["energy_min_sum"] < figures["energy_noisy"]
