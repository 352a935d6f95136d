"""The embedded engine: Katib's Experiment/Trial semantics on one machine."""
