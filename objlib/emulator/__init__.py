"""A local Gemini File Search emulator, faithful at the HTTP level: the real google-genai SDK
talks to it through ``GOOGLE_GEMINI_BASE_URL`` (or ``HttpOptions(base_url=...)``).

Split as moto splits a fake service: ``state`` (in-memory model, domain errors), ``behaviour``
(latency, faults, quota, statistics), ``handlers`` (one function per action), ``routes`` (the
table) and ``server`` (the threaded HTTP server and ``Emulator``).

    with Emulator(profile="instant", faults={"rate_limit": 0.1}, seed=1) as emu:
        os.environ["GOOGLE_GEMINI_BASE_URL"] = emu.base_url
"""

from objlib.emulator.behaviour import FAULT_KINDS, LATENCY_STEPS, PROFILES, Profile, parse_knobs
from objlib.emulator.server import Emulator
from objlib.emulator.state import ApiError, State

__all__ = ["Emulator", "PROFILES", "Profile", "LATENCY_STEPS", "FAULT_KINDS", "parse_knobs",
           "ApiError", "State"]
