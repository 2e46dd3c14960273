"""Where billing and bank files come from and where our reports go: local folder, SFTP, S3.

Every store speaks in (folder, name) pairs inside one creditor's area; names that come from a
listing are data, checked by `safe_name` before they touch a path.
"""

from creditflow.stores.base import FileStore, StoredFile, StoreError, UnsafeName, safe_name
from creditflow.stores.local import LocalStore

__all__ = ["FileStore", "LocalStore", "StoreError", "StoredFile", "UnsafeName", "safe_name"]
