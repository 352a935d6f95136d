"""The development cluster: Kubernetes' and Katib's own released code, built from source, on
this machine (``make cluster-up`` / ``make cluster-down``).

Everything here is the real part but one: the kubelet and container runtime, which cannot run
without images, are stood in for by ``node_agent`` (pods as local processes, each pod in its own
network and PID namespace). docs/devcluster.md says what runs, how, and what differs.
"""
