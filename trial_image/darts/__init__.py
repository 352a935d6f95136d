"""DARTS inside one trial, as Katib's ``darts`` algorithm expects: parse Katib's three values
(:mod:`.settings`), build the weight-sharing super-net (:mod:`.supernet`), run the bi-level search
(:mod:`.search`), derive the genotype, then train it like any candidate (:mod:`.run`)."""
