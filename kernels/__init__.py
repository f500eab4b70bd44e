"""Fused loss kernels (Triton) with torch reference versions; installed as ``fastlrwa.kernels``."""
