"""Replay memories: the device-resident ring and generative (VAE) replay."""
