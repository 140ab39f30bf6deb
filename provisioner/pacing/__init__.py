"""pacing."""
