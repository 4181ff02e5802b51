"""Parity harness: every ONNX graph and the whole generation against the PyTorch reference."""
