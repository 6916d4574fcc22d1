"""One module per format. Each declares `FORMAT`, a `FormatSpec` (see `base.py`); the registry
(`modelport.registry`) collects them and derives every other table from them."""
