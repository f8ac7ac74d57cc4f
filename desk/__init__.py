"""The ZSM desk's screen: a small web server for the KPC'er and the OvJ, a client of the
public gRPC APIs only (docs/DESK.md)."""
