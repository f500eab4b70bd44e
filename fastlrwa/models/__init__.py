"""Classifier, generator and VAE architectures, built by name; safe checkpoint loading."""
