"""Serving trained exports with Ray Serve: protocols, batching, quantization, metrics."""
