"""nasflow's algorithms as a Katib Suggestion service (``python -m pipeline.service``).

Katib starts one suggestion pod per experiment from the image ``katib-config`` names for its
``algorithmName``, and calls ``GetSuggestions`` with the experiment and every trial so far. The
service keeps no state: each call rebuilds the algorithm from the trials it is sent (each carries
its suggestion index as a label), exactly as the embedded engine rebuilds it on ``--resume``, so a
restarted pod suggests what the old one would have. ``api/`` holds Katib's messages (our own
``.proto`` with Katib's names and numbers); ``convert`` maps them to Katib's typed models;
``server`` is the gRPC service and its health check.
"""
