"""Engine tests switch torch's deterministic-algorithms flag (``seed_everything``); put it back afterwards so that
tests of other packages in the same session see torch's defaults."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_determinism_flag():
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
