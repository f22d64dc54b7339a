"""The benchmark behind bench/run: the generated stack against its baselines, on 127.0.0.1."""
