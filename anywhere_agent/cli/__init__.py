"""Command-line interface: wiring only; each noun has its own module."""
