"""Front end: the jupyter_server extension (FoundryApp and its handlers)."""
