"""The one way we turn untrusted XML bytes into an lxml tree.

Bank statements and e-invoices arrive from outside, so every XML parser in creditflow goes through
here: no DTD is loaded, no entity is expanded, nothing is fetched from the network or the disk, and
libxml2 keeps its size/depth limits (``huge_tree=False``). A document that declares a DOCTYPE is
refused before libxml2 sees it at all, because a DOCTYPE is the only way to declare entities
(billion laughs) or point at external ones (XXE, ``file:///etc/passwd``); neither UBL nor ISO 20022
ever needs one. Any failure comes out as ``FileRejected`` naming line and column, never as an lxml
exception.
"""

from __future__ import annotations

import threading

from lxml import etree

from creditflow.parsers.errors import EMPTY_FILE, MALFORMED, FileRejected

FORBIDDEN_DTD = "forbidden_dtd"
"""Code of the rejection for a document carrying a DOCTYPE / ENTITY declaration."""

_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,  # xml:id bookkeeping costs time and we never look elements up by id
    compact=True,
    # The indentation between elements is dropped while parsing (~13 % of the UBL parse, and fewer
    # nodes for every later walk). libxml2 only drops a blank run that sits between elements and
    # never a leaf's own content ("<Name>  </Name>" keeps its blanks) nor text beside other text,
    # so a field's value changes only where a schema-invalid element mixes child elements and
    # blanks, and then only by that whitespace. tests/test_parsers_ubl.py pins the cases.
    remove_blank_text=True,
)

_BOM = b"\xef\xbb\xbf"
_PROLOG_SCAN_LIMIT = 64 * 1024

_local = threading.local()


def make_parser() -> etree.XMLParser:
    """A fresh hardened parser. lxml parsers are not thread-safe, so `parse_xml` keeps one per thread."""
    return etree.XMLParser(**_PARSER_OPTIONS)


def _thread_parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = make_parser()
    return parser


def has_doctype(data: bytes) -> bool:
    """True when a DOCTYPE precedes the root element (checked on bytes, before any parsing).

    Only the prolog is scanned (BOM, XML declaration, whitespace, comments, processing
    instructions), so a comment in the body mentioning "<!DOCTYPE" is no false alarm. Encodings that
    are not ASCII-compatible (UTF-16/32) slip past this byte test; `parse_xml` checks `docinfo`
    after parsing for them.
    """
    # No "!" byte at all means no "<!DOCTYPE": memchr speed (~0.3 us on 5 kB), where a search for
    # the 3-byte "<!D" took ~4 us because "<" is so frequent in XML. Otherwise the same test as
    # before: no "<!D"/"<!d" anywhere, no need to scan the prolog.
    if b"!" not in data or (b"<!D" not in data and b"<!d" not in data):
        return False
    position = 3 if data.startswith(_BOM) else 0
    size = len(data)
    while position < size:
        if position > _PROLOG_SCAN_LIMIT:
            return False  # absurd prolog: left to the docinfo check after the (safe) parse
        char = data[position]
        if char in b" \t\r\n":
            position += 1
        elif data.startswith(b"<?", position):
            end = data.find(b"?>", position + 2)
            if end < 0:
                return False
            position = end + 2
        elif data.startswith(b"<!--", position):
            end = data.find(b"-->", position + 4)
            if end < 0:
                return False
            position = end + 3
        else:
            return data[position:position + 9].upper() == b"<!DOCTYPE"
    return False


def parse_xml(data: bytes, *, source: str) -> etree._Element:
    """Parse `data` into its root element or raise `FileRejected` (empty, DOCTYPE, syntax error)."""
    if isinstance(data, str):  # a caller that already decoded: lxml refuses str with an encoding decl
        data = data.encode("utf-8")
    elif not isinstance(data, bytes):
        data = bytes(data)
    if not data or data.isspace():
        raise FileRejected(source, "the file is empty", code=EMPTY_FILE)
    if has_doctype(data):
        raise FileRejected(
            source,
            "a DOCTYPE/ENTITY declaration is not allowed in this document (entity expansion and "
            "external entities are refused)",
            code=FORBIDDEN_DTD,
            location="line 1",
        )
    parser = _thread_parser()
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (exc.lineno or 0, 0)
        raise FileRejected(
            source,
            f"not well-formed XML: {exc.msg}",
            code=MALFORMED,
            location=f"line {line}, column {column}",
        ) from None
    except (etree.LxmlError, ValueError) as exc:  # e.g. an unknown encoding declaration
        raise FileRejected(source, f"not readable as XML: {exc}", code=MALFORMED) from None
    if root is None:
        raise FileRejected(source, "no root element", code=MALFORMED)
    if not _ascii_compatible(data):
        docinfo = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise FileRejected(
                source,
                "a DOCTYPE/ENTITY declaration is not allowed in this document",
                code=FORBIDDEN_DTD,
                location="line 1",
            )
    return root


def _ascii_compatible(data: bytes) -> bool:
    """True when the byte scan of `has_doctype` is conclusive: the document starts with '<' or
    whitespace (UTF-8 / Latin-1 / ASCII, optionally a UTF-8 BOM) and no NUL follows (UTF-16/32)."""
    if data[0] == 0x3C and 0 not in data[1:4]:  # "<?xml", "<Invoice": the usual case, no slicing
        return True
    head = data[3:7] if data.startswith(_BOM) else data[:4]
    return bool(head) and head[:1] in b"< \t\r\n" and b"\x00" not in head


def location_of(element: etree._Element, xpath: str) -> str:
    """`xpath (line N)`: how our errors point at an element."""
    line = getattr(element, "sourceline", None)
    return f"{xpath} (line {line})" if line else xpath
