"""nasflow's pipeline: validate Katib Experiments, run them locally, submit them, promote models."""
