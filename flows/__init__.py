"""Prefect flows: orchestration over the DVC stage graph (see flows/pipeline.py)."""
