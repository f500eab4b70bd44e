"""Datasets read from their standard on-disk formats, held as uint8 tensors."""
