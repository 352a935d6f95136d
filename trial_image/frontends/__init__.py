"""Front ends: each turns one of Katib's parameter formats into a :class:`CandidateSpec`."""
