"""The review desk (``audify serve``): browse OUT, listen to segments, record verdicts.

This module imports nothing, so the command line can name the desk's defaults without loading
the web stack; ``app.server`` builds the application.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
