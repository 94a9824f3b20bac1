"""The embedded physics-based synthetic Rhineland scenario, written in the EGMS L3 CSV format."""
