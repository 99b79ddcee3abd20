"""audify-batch: label environmental sounds in large audio archives."""

__version__ = "0.1.0"
