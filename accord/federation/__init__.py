"""The top floor's federation file and whole-federation provisioning (`provision.py`)."""
