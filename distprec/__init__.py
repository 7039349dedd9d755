"""distprec: a parallel search for the layers of an ONNX model that must stay in FP32."""

__version__ = "0.1.0"
