from __future__ import annotations

import pytest

from runtime.stats import wilson_half_width


def test_wilson_interval() -> None:
    # 86 of 100: the normal approximation gives 0.068; Wilson is close to it mid-range.
    assert wilson_half_width(86, 100) == pytest.approx(0.0668, abs=2e-3)
    assert 0 < wilson_half_width(100, 100) < 0.05  # still positive at 100%
    with pytest.raises(ValueError):
        wilson_half_width(3, 2)
