"""``python -m devcluster.node_agent KUBECONFIG``: the node agent (as root: it makes network
namespaces and mounts); ``make cluster-up`` starts it."""

import logging
import sys
from pathlib import Path

from devcluster.node_agent.agent import NodeAgent

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
NodeAgent(Path(sys.argv[1])).run()
