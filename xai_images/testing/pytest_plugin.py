"""pytest plugin: fixtures for testing code that uses xai-images."""
