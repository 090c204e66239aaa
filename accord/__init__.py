"""Accord: federated fine-tuning where no one, not even the coordinator, sees an update."""

__version__ = "0.1.0"
