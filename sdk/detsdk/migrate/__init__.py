"""MMDetection configs as det-sdk recipes: read as data (``config_reader``), mapped part by part, written as TOML."""
