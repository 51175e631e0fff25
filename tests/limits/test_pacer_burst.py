"""The pacer (connectors/limits.py) on a virtual clock: the first calls of a quiet spell go out
back to back (a hot-path activity's sequential reads wait for no spacing, issue 15), a steady
stream keeps the configured rate, and no 1-second window of send times holds more than it."""

from __future__ import annotations

import pytest

from connectors import limits
from connectors.base import ConnectorError
from tests.limits.conftest import peak_per_second


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(limits.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(limits.time, "sleep", fake.sleep)
    return fake


def _send(pacer: limits.Pacer, clock: _Clock, n: int) -> list[float]:
    sent = []
    for _ in range(n):
        pacer.acquire()
        sent.append(clock.now)
    return sent


def test_a_quiet_spell_lets_the_first_calls_out_at_once(clock: _Clock) -> None:
    pacer = limits.Pacer("chargebee", 13.3)  # Chargebee's production share (16.6 x 0.8)
    sent = _send(pacer, clock, limits.BURST + 1)
    assert sent[: limits.BURST] == [1000.0] * limits.BURST
    assert sent[limits.BURST] == pytest.approx(1000.0 + 1 / 13.3)
    clock.sleep(5)  # quiet again: the bucket refilled
    again = _send(pacer, clock, limits.BURST)
    assert again == [again[0]] * limits.BURST


@pytest.mark.parametrize("rate", [2.0, 4.0, 13.3, 46.7])
def test_a_steady_stream_keeps_the_rate_in_every_window(clock: _Clock, rate: float) -> None:
    pacer = limits.Pacer("vendor", rate)
    sent = _send(pacer, clock, int(rate * 20))
    assert peak_per_second(sent) <= rate
    # the sustained rate is the configured one, not less (the burst costs no throughput)
    assert (len(sent) - 1) / (sent[-1] - sent[0]) >= rate * 0.95


def test_bursts_after_pauses_never_overfill_a_window(clock: _Clock) -> None:
    pacer = limits.Pacer("vendor", 4.0)
    sent: list[float] = []
    for pause in (0.0, 0.3, 0.05, 0.6, 0.0, 0.9, 0.2) * 5:
        clock.sleep(pause)
        sent += _send(pacer, clock, 3)
    assert peak_per_second(sent) <= 4


def test_a_slot_too_far_away_is_a_rate_limited_error(clock: _Clock) -> None:
    pacer = limits.Pacer("vendor", 1.0)
    for _ in range(5):
        pacer.reserve()
    with pytest.raises(ConnectorError) as err:
        pacer.reserve(max_wait_s=2.0)
    assert err.value.code == "paced" and err.value.retry_after > 2.0


def test_a_few_calls_a_second_go_strictly_spaced(clock: _Clock) -> None:
    """At HubSpot's 4 searches a second a burst of 3 is most of the vendor's window, and the
    vendor counts arrivals: those calls never go out together."""
    sent = _send(limits.Pacer("hubspot.search", 4.0), clock, 4)
    assert [round(b - a, 6) for a, b in zip(sent, sent[1:], strict=False)] == [0.25] * 3
