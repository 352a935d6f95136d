"""The one stand-in of the development cluster: a node agent in place of the kubelet and a
container runtime (no image can be pulled here). It runs each pod bound to its Node as local
processes in the pod's own network and PID namespaces, images mapped to local commands by one
table (``images.py``)."""
