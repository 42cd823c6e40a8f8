"""Evaluation of generated videos."""
