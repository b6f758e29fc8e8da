"""sluice: an event-driven file pipeline of small AWS Lambda handlers."""

__version__ = "0.1.0"
