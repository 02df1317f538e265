"""Hybrid deployments: a small local model and a large remote one working one task together.

``Hybrid(local=..., remote=..., protocol=Minion() | Minions())`` (``deployment.py``); the two
protocols (``protocols.py``), their prompts and JSON shapes (``prompts.py``), the harness-side
chunking (``chunking.py``), the reply parser (``replies.py``), each call as a child record
(``calls.py``), and the price and remote-energy assumptions (``prices.py``).
"""

from loadbench.hybrid.chunking import Chunking
from loadbench.hybrid.deployment import Hybrid
from loadbench.hybrid.prices import PRICES, PriceTable, RemoteEnergy
from loadbench.hybrid.protocols import Minion, Minions

__all__ = ["PRICES", "Chunking", "Hybrid", "Minion", "Minions", "PriceTable", "RemoteEnergy"]
