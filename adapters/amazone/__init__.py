"""The Amazone source adapter: its own issue."""
