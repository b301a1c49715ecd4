"""gentool's built-in anomaly detectors on photographs: flows over a frozen CNN's features."""

__all__: list[str] = []
