"""Distillation: teacher cache, SVD initialisation, losses, trainer, export."""
