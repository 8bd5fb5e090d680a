"""xrec: an ahead-of-time compiler for recommendation-model inference."""
__version__ = "0.1.0"
