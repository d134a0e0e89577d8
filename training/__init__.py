"""guided_diffusers.training (filled in by later issues)."""
