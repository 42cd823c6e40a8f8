"""svd: the Stable Video Diffusion recipe as a reproducible pipeline (curation, training, evaluation, operations)."""

import os

# Telemetry off for every tool we drive, before any of them is imported.
for _key, _value in {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
}.items():
    os.environ.setdefault(_key, _value)

__version__ = "0.1.0"
