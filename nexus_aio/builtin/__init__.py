"""Built-in features, each an internal plugin using the public hooks."""
