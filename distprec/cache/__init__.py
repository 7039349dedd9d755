"""Persistent caches: INT8 calibration ranges keyed by what they depend on."""
