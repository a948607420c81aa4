"""The domain of Media Pipeline: models, stages, safe file moves, the Syncthing client."""

__version__ = "0.1.0"
