"""mqtt-session-sim: MQTT v5 Session Expiry Interval and Clean Start policies, simulated with SimPy.

>>> import sim
>>> res = sim.run(sim.load_scenario("data/scenarios/transport_example.yaml"), seed=1)  # doctest: +SKIP
"""
from .advise import Advice, advise
from .compare import compare
from .config import BrokerConfig, ConsumerBlock, PublisherBlock, Scenario, load_scenario
from .ledger import ConservationError
from .outages import Backoff, Distribution, NetworkOutages, Outages
from .protocol import DEPARTED_FATES, FATES, LOSS_CAUSES, UINT_MAX
from .restarts import Restarts
from .run import EngineError, Result, run
from .sweep import summarize, sweep
from .study import load_study
from .units import ScenarioError

__all__ = ["UINT_MAX", "LOSS_CAUSES", "DEPARTED_FATES", "FATES", "Scenario", "BrokerConfig", "ConsumerBlock", "PublisherBlock",
           "Outages", "Distribution", "Backoff", "NetworkOutages", "Restarts",
           "load_scenario", "run", "Result", "sweep", "summarize", "compare", "load_study", "advise", "Advice", "ScenarioError", "ConservationError",
           "EngineError"]
__version__ = "0.1.0"
