"""Promotion: the optimal trial of an experiment (:mod:`.optimal_trial`), registered and
compared in the MLflow model registry under the aliases champion/challenger (:mod:`.registry`)."""
