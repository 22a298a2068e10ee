import math

import pytest
import torch

from pdd.engine.schedule import build_optimizer, build_scheduler


def _learning_rates(kind: str, epochs: int = 100) -> list[float]:
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))])
    scheduler = build_scheduler(optimizer, kind, epochs=epochs)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_periodic_schedule_matches_the_official_warm_restart():
    rates = _learning_rates("cosine_periodic")
    assert rates[0] == pytest.approx(2e-3)
    assert rates[40] == pytest.approx(2e-4)
    assert rates[80] == pytest.approx(2e-3)
    assert rates[90] == pytest.approx(1.74e-3, abs=5e-6)
    assert rates[99] == pytest.approx(1.17e-3, abs=5e-6)


def test_single_cosine_decays_once_over_the_run():
    rates = _learning_rates("cosine_single", epochs=50)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert rates[25] == pytest.approx(2e-4 + 0.5 * (2e-3 - 2e-4) * (1 + math.cos(math.pi / 2)))


def test_optimizer_is_the_authors_adam():
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))])
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert (group["lr"], group["betas"], group["weight_decay"]) == (2e-3, (0.5, 0.999), 0.0)


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cosine_periodic"):
        build_scheduler(build_optimizer([torch.nn.Parameter(torch.zeros(1))]), "linear")


def test_constant_schedule_keeps_the_initial_rate_as_rd4ad_does():
    """RD4AD's main.py steps Adam(lr 0.005) for 200 epochs with no scheduler."""
    assert set(_learning_rates("constant", epochs=20)) == {2e-3}
