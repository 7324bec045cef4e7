"""QuickBooks Online adapter: the only package importing python-quickbooks and intuitlib.

None of their objects or exceptions leave it: callers see domain.ports dataclasses, QboSettings,
TokenSet (adapters.vault) and this package's own QboAuthError.
"""
