"""The review desk (``audify serve``): browse OUT, listen to segments, record verdicts."""

# The desk's defaults live here, where importing them loads no web stack (the command line).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
