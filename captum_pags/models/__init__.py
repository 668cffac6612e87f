"""Small reference networks and loaders for the weights the package ships."""

from .classifiers import MLP, SmallCNN

__all__: list[str] = ["MLP", "SmallCNN"]
