"""The review desk (``audify serve``): browse OUT, listen to segments, record verdicts."""
