"""Model builders: each model comes from a config with random init or from local pretrained weights."""
