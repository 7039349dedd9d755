"""Making and running candidates: the prepared model and its layer table, plan rewrites,
the switchboard (plans as inputs of one model), and the backends that run them."""
