"""nasflow's trial image: trains ONE Keras candidate from the parameters Katib hands it.

Layout: ``frontends/`` turn Katib's parameters (hyperparameter flags, ENAS wire strings, a DARTS
genotype) into one :class:`~trial_image.spec.CandidateSpec`; ``builder`` turns that spec into a
Keras model; ``data``, ``training``, ``katib_metrics`` and ``tracking`` run, report and record it.
"""
