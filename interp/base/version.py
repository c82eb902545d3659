"""The workbench's version (recorded in every results.json and run manifest)."""

__version__ = "0.1.0"
