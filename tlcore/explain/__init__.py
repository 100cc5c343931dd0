"""explain wing."""
