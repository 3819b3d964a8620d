"""Helpers of the sealing package (age encoding, STREAM, armor, I/O); internal and unstable."""
