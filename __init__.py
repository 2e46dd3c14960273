"""creditflow: billing files in, payable invoices out, payments reconciled.

The repository root is the `creditflow` package (see docs/adr/0001-layout.md): `creditflow.parsers`
lives in ./parsers, `creditflow.flows` in ./flows, and so on.
"""

__version__ = "0.1.0"
