"""guided_diffusers.pipelines (filled in by later issues)."""
