"""Fake of the xAI image API for tests, benchmarks and demos."""
