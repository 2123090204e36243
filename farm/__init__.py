"""The dispatcher: settings, the take record in SQL, storage, the REST API, the release loop."""

__version__ = "0.1.0"
