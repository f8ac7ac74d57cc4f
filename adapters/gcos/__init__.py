"""The GCOS source adapter: its own issue."""
