"""The default student shipped with the package (checkpoint and model card): data, no code."""
