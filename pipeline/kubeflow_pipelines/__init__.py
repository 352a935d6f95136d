"""The story as a Kubeflow Pipelines (v2) pipeline: one step per stage (search, final training,
promotion, compression), the pipeline config's settings as its parameters.

:mod:`.parameters` maps a config to parameters and back (nasflow's side); :mod:`.definition`
builds the pipeline with the ``kfp`` SDK, in a Python of its own (``kfp`` pins protobuf<7 and
kubernetes<31, which TensorFlow and nasflow's cluster client cannot share), from the JSON that
``nasflow kfp compile`` hands it. Each step runs ``nasflow kfp stage NAME``.
"""
