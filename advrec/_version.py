"""The package version, in one place: the package face, checkpoints and the CLI import it."""
__version__ = "0.1.0"
