"""The feedback service (terugkoppeling of ZSM decisions to the houses): its own issue."""
