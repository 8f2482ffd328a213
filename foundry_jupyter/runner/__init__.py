"""Front end: the model runner process, one per loaded model."""
