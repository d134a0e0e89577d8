"""The Gradio Space: `app.py` starts it; see each module's docstring."""
