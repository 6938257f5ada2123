"""Bundled data: the sample curriculum."""
