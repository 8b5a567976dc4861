"""A user's own project on reglab: a data source and a network, nothing of reglab imported."""
