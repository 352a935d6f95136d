"""Katib on a cluster: the typed client, its one-line errors, and submission rendering."""
