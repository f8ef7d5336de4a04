"""objlib: mirror a local document library into a Gemini File Search store."""

__version__ = "0.1.0"
