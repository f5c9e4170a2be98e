"""Training pipeline for the bundled BitNet-style protein model (see README.md)."""
