"""Built-in transforms over samples: geometric (resize, flip, pad) and photometric (distortion, normalize)."""
