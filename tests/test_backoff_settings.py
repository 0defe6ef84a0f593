"""Restart backoff and delivery retries share one set of validated fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from supervisor._config import BackoffConfig
from supervisor._core.limits import BackoffSettings
from supervisor._routing.config import RetryConfig


@pytest.mark.parametrize("model", [BackoffConfig, RetryConfig])
def test_both_derive_from_backoff_settings(model: type[BackoffSettings]) -> None:
    assert issubclass(model, BackoffSettings)
    with pytest.raises(ValidationError, match=r"cap \(1\.0\) must not be below initial \(2\.0\)"):
        model(initial=2.0, cap=1.0)
    with pytest.raises(ValidationError, match="factor"):
        model(factor=0.5)
    with pytest.raises(ValidationError, match="initial"):
        model(initial=0)


def test_each_keeps_its_own_defaults() -> None:
    assert (BackoffConfig().initial, BackoffConfig().reset_after) == (1.0, 60.0)
    assert (RetryConfig().initial, RetryConfig().max_attempts) == (0.5, None)
