"""Training and evaluation of the audify-batch CNN on ESC-50."""
