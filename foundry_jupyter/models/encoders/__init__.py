"""Encoder (embedding) models to ONNX without torch: a sentence-transformers BERT folder in, an ONNX
embedding folder out (`convert_sentence_transformers`), and the built-in random `random-embed` model.
Imported lazily by the rest of `models`: the converter loads numpy."""
