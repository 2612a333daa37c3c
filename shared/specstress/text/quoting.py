"""Quoting untrusted text (a model's answer, a generated query) inside a prompt.

Every `<` and `&` of the quoted text is written as an XML entity, so the text holds no tag at
all: no spelling of a closing tag (`</Response>`, `</ assistant_response >`) and no forged
opening block can end or imitate the block around it. Escaping is deterministic, so the same
answer makes the same prompt and the ledger's cache keeps working; models read entities as the
characters they stand for.
"""

from __future__ import annotations

import re

__all__ = ["block", "quote"]

_KEY = re.compile(r"^[A-Za-z0-9._:-]+$")


def quote(text: str) -> str:
    """`text` with `&` and `<` written as entities: it cannot open or close a tag."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def block(tag: str, text: str, **attributes: str) -> str:
    """`text`, quoted, between `<tag attr="...">` and `</tag>` on lines of their own.

    Attribute values are names the config controls (model keys, variants); anything else is
    refused rather than quoted, so a block's opening line is always what the prompt says.
    """
    for name, value in (("tag", tag), *attributes.items()):
        if not _KEY.match(value):
            raise ValueError(f"block {name} {value!r}: only letters, digits and ._:- allowed")
    opening = "".join(f' {name}="{value}"' for name, value in attributes.items())
    return f"<{tag}{opening}>\n{quote(text)}\n</{tag}>"
