"""What makes models robust: losses, attacks, smoothing and a training loop."""
