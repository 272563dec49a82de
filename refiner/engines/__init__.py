"""Backends that run one round of trials. Each takes a round's space and budget and reports
finished trials through a callback; none of them touches the run folder."""
