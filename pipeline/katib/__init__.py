"""Katib's contract: the vocabulary both engines, promotion and the suggestion service share.

``manifest`` parses an Experiment into Katib's own typed models, ``validation`` holds the checks
Katib's webhook and services make (one module per manifest section), ``search_space`` the
parameter and NAS spaces, ``objective`` how a metric's value is read, ``status`` the trial and
experiment condition names.
"""
