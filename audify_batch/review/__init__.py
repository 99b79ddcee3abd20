"""What reviewed segments teach: exports, calibration, custom heads."""
