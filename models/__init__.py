"""guided_diffusers.models (filled in by later issues)."""
