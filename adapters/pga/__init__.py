"""The PGA/A&T source adapter: its own issue."""
