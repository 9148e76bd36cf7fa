"""Public fast ops."""
