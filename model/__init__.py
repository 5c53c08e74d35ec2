"""PixelDRL-MG network, the pixel-wise episode, inference and checkpoints."""
