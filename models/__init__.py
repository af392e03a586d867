"""Persistence: typed models, the engine/session factory and the functions that read and write."""
