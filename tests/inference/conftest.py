"""Shared fixtures: random-init models (no downloads) at tiny input sizes, generated images.
The builders behind them are in tests/inference/factories.py."""

import pytest
import torch

from inference.archs import list_archs
from tests.inference.factories import seeded_model, shape_image

# Tiny inputs are dominated by per-op overhead; a second intra-op thread mostly spins,
# and stalls badly when other test suites share the two cores.
torch.set_num_threads(1)


_cache: dict[str, torch.nn.Module] = {}


@pytest.fixture(scope="session")
def model_for():
    """Builds each architecture once per session (seed 0, eval mode). Do not mutate weights."""

    def get(arch: str):
        if arch not in _cache:
            _cache[arch] = seeded_model(arch)
        return _cache[arch]

    return get


@pytest.fixture(params=list_archs())
def arch(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """An ImageFolder of 3 classes x 6 generated 32x32 PNGs."""
    root = tmp_path_factory.mktemp("imagefolder")
    for kind in ("disc", "square", "stripes"):
        (root / kind).mkdir()
        for i in range(6):
            shape_image(kind, seed=i).save(root / kind / f"{i}.png")
    return root
