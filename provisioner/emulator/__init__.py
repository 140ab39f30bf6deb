"""A faithful, fault-injecting emulator of the Qoder Environments API.

It imports nothing else from ``provisioner``: it is an independent oracle for the client.
"""

from provisioner.emulator.config import EmulatorConfig
from provisioner.emulator.faults import FaultPlan
from provisioner.emulator.server import Emulator

__all__ = ["Emulator", "EmulatorConfig", "FaultPlan"]
