"""Source adapters for the Safety Houses' systems, on one adapter framework: their own issue."""
