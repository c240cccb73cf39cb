"""Tables of the transfer ledger (files sent to hosts without the shared file system).

Defined on the store's ``Base`` so that ``create_schema`` creates them with the rest.
"""
