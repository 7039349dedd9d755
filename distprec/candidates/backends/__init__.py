"""Backends: one runtime each, behind one interface (load a model, run feeds)."""

from distprec.candidates.backends.ort import DEVICES, OrtBackend

__all__ = ["DEVICES", "OrtBackend"]
