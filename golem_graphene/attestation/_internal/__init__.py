"""Helpers of the attestation package; not part of the public API."""
