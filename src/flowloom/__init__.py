"""FlowLoom: a verifiable record of every AI-assisted change and the decision behind it."""

__version__ = "0.1.0"
__all__ = ["__version__"]
