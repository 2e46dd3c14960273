"""Bytes of one format in, canonical polars DataFrames plus typed errors out.

One module per format; each offers a parser object with `identify()` and `parse()`
(see `creditflow.parsers.base`). Parsers import nothing of ours but the shared schema and errors.
"""
