"""gentool's built-in normalizing flows: MADE, MAF and IAF (registered by ``.plugin``)."""

__all__: list[str] = []
