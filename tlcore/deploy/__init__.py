"""deploy wing."""
