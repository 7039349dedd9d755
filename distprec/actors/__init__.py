"""Ray side of distprec: evaluator actors, the pool that places them, the driver loop."""
