"""The synthetic "shapes world": the project's embedded training and evaluation data.

Long web-like videos of coloured shapes (shots joined by cuts and fades, static/text/low-quality shots) with exact
ground truth, a held-aside evaluation set (action clips, 3D orbits) and broken inputs for curation to quarantine.
"""

from svd.world.generate import generate_world

__all__ = ["generate_world"]
