"""Training loop pieces: the trainer, its checkpointer and hooks, console output."""
from .trainer import NucleiTrainer  # noqa: F401
