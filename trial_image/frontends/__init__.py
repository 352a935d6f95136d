"""Front ends: each turns one of Katib's parameter formats into the nodes of a candidate;
:meth:`trial_image.spec.Frame.candidate` builds the :class:`CandidateSpec` from them."""
