"""The plan's own helpers: its configuration."""
