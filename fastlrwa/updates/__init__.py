"""Student and generator update strategies: pure functions of (params, buffers, batches)."""
