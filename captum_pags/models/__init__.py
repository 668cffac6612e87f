"""Small reference networks and loaders for the weights the package ships."""

__all__: list[str] = []
