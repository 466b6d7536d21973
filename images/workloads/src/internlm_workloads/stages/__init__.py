"""One module per stage; each exposes ``run(cfg: StageConfig) -> dict`` (the result)."""
