"""fastlrwa: fast, compiled data-free knowledge distillation (LRWA, CVPR 2023, and its baselines)."""

__version__ = "0.1.0"
