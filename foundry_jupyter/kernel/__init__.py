"""Front end: %foundry magics, widgets and DataFrames inside an IPython kernel."""
