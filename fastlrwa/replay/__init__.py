"""Replay memories: the device-resident ring memory bank and generative (VAE) replay."""

from fastlrwa.replay.generative import GenerativeReplay, vae_loss
from fastlrwa.replay.memory_bank import MemoryBankReplay
from fastlrwa.replay.ring import ReplayRing
from fastlrwa.replay.scheme import ReplayScheme
from fastlrwa.replay.vae import VAE

__all__ = ["GenerativeReplay", "MemoryBankReplay", "ReplayRing", "ReplayScheme", "VAE", "vae_loss"]
