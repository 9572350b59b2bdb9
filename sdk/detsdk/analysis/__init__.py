"""Model analysis: complexity (parameters, FLOPs)."""
