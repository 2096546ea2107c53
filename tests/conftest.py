"""Shared fixtures. Real-broker tests need mosquitto: in CI (CI=true) they must run; locally they
skip with a reason when mosquitto is not installed."""
import os

import pytest

from sim.realbroker import Mosquitto, find_mosquitto


@pytest.fixture
def mosquitto_broker():
    """Factory: ``broker = mosquitto_broker({"max_queued_messages": 3})`` starts a fresh broker
    on 127.0.0.1 (stopped at the end of the test)."""
    if find_mosquitto() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is not installed but CI=true: .ci/run must install it")
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto) — real-broker tests skipped")
    started = []

    def start(settings=None):
        b = Mosquitto(settings).start()
        started.append(b)
        return b

    yield start
    for b in started:
        b.close()
