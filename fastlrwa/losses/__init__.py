"""Distillation and generator losses."""
