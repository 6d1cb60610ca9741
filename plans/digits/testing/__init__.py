"""E1–E6: scoring the best checkpoint, the baselines, the pictures, the quick validation."""
