"""Layer 1: inference on onnxruntime-genai. No Jupyter, no HTTP."""
