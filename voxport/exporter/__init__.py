"""PyTorch checkpoint -> ONNX graphs + manifest."""
