"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as the apiserver applies them.

Both return a new document and never change their input. apply_json_patch raises
PatchError (answered with 422 or 400 by the caller) when an operation cannot be applied.
"""

import copy


class PatchError(ValueError):
    pass


def merge_patch(target, patch):
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token):
    return token.replace("~1", "/").replace("~0", "~")


def _split(pointer):
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError("invalid JSON pointer %r: must start with /" % pointer)
    return [_unescape(t) for t in pointer[1:].split("/")]


def _walk(doc, parts, pointer):
    for p in parts:
        if isinstance(doc, dict):
            if p not in doc:
                raise PatchError("doc is missing path: %s" % pointer)
            doc = doc[p]
        elif isinstance(doc, list):
            try:
                doc = doc[int(p)]
            except (ValueError, IndexError):
                raise PatchError("doc is missing path: %s" % pointer) from None
        else:
            raise PatchError("doc is missing path: %s" % pointer)
    return doc


def _index(container, token, pointer, adding):
    if token == "-" and adding:
        return len(container)
    try:
        i = int(token)
    except ValueError:
        raise PatchError("invalid array index %r in %s" % (token, pointer)) from None
    limit = len(container) if adding else len(container) - 1
    if i < 0 or i > limit:
        raise PatchError("index out of range: %s" % pointer)
    return i


def _add(doc, pointer, value):
    parts = _split(pointer)
    if not parts:
        return copy.deepcopy(value)
    parent = _walk(doc, parts[:-1], pointer)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, pointer, True), copy.deepcopy(value))
    else:
        raise PatchError("doc is missing path: %s" % pointer)
    return doc


def _remove(doc, pointer):
    parts = _split(pointer)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _walk(doc, parts[:-1], pointer)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError("Unable to remove nonexistent key: %s: missing value" % last)
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, pointer, False))
    raise PatchError("doc is missing path: %s" % pointer)


def apply_json_patch(target, ops):
    """RFC 6902: add, remove, replace, move, copy and test, applied in order."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("each operation needs op and path")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _walk(doc, _split(path), path)
            if _split(path):
                _remove(doc, path)
            doc = _add(doc, path, op.get("value"))
        elif kind in ("move", "copy"):
            src = op.get("from")
            if src is None:
                raise PatchError("%s needs from" % kind)
            value = copy.deepcopy(_walk(doc, _split(src), src))
            if kind == "move":
                _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _walk(doc, _split(path), path) != op.get("value"):
                raise PatchError("testing value %s failed" % path)
        else:
            raise PatchError("Unexpected kind: %s" % kind)
    return doc
