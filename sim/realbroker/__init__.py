"""Real-broker tooling, apart from the core model: an optional extra (``pip install
'mqtt-session-sim[broker]'`` for paho-mqtt; Mosquitto from the system's packages).

- :mod:`sim.realbroker.mosquitto`: start and stop a Mosquitto process on 127.0.0.1;
- :mod:`sim.realbroker.conformance`: play a scripted scenario on it with paho-mqtt v5 clients
  and compare what it did with the model (docs/conformance.md);
- :mod:`sim.realbroker.calibrate`: fit the profile's memory constants to Mosquitto's measured
  heap (``python -m sim.realbroker.calibrate mosquitto``);
- :mod:`sim.realbroker.traces`: turn a Mosquitto log into outage traces for a scenario.

The core (``sim`` and its other modules) never imports this package; a test checks it.
"""
from .mosquitto import Mosquitto, find_mosquitto, free_port, mosquitto_version

__all__ = ["Mosquitto", "find_mosquitto", "free_port", "mosquitto_version"]
