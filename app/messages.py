"""Turning exceptions from libraries into one line a person can read."""


def sentence(text: str) -> str:
    """``text`` as a sentence: capital first letter, closing full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message, or its type name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__
