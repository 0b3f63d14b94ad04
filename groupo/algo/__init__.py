"""Pure math of every axis: tensor functions, no model, no I/O, no global RNG."""
