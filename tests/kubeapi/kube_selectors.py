"""Label and field selectors as the kube-apiserver parses them.

Label selectors follow the grammar of k8s.io/apimachinery/pkg/labels.Parse:
  requirement := key | '!' key | key ('=' | '==' | '!=') value
               | key ('in' | 'notin') '(' value (',' value)* ')' | key ('<' | '>') integer
requirements are joined by ',' and all must hold. '!=' and 'notin' also match an object
that lacks the key. Field selectors (fields.ParseSelector) take 'key=value', 'key==value'
and 'key!=value' terms; which keys a resource supports is up to the resource.

parse_labels and parse_fields raise SelectorError with the apiserver's wording; the
caller answers it with 400 BadRequest.
"""

import re

QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
DNS1123_SUBDOMAIN = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


class SelectorError(ValueError):
    pass


def key_error(key):
    """Why key is not a valid label key (a qualified name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return "prefix part must be a lowercase RFC 1123 subdomain"
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not QUALIFIED_NAME.fullmatch(name):
        return ("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                "must start and end with an alphanumeric character")
    return None


def value_error(value):
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not LABEL_VALUE.fullmatch(value):
        return ("a valid label must be an empty string or consist of alphanumeric "
                "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                "character")
    return None


_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[^\s,()=!<>]+)")


def _tokens(text):
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            break  # only trailing whitespace is left
        out.append(m.group(1))
        pos = m.end()
    return out


class Requirement:
    def __init__(self, key, op, values=()):
        self.key, self.op, self.values = key, op, list(values)

    def matches(self, labels):
        have = self.key in labels
        v = labels.get(self.key)
        if self.op == "exists":
            return have
        if self.op == "!":
            return not have
        if self.op in ("=", "=="):
            return have and v == self.values[0]
        if self.op == "!=":
            return not have or v != self.values[0]
        if self.op == "in":
            return have and v in self.values
        if self.op == "notin":
            return not have or v not in self.values
        try:
            n = int(v) if have else None
        except ValueError:
            return False
        if n is None:
            return False
        return n > int(self.values[0]) if self.op == ">" else n < int(self.values[0])


class LabelSelector:
    def __init__(self, requirements):
        self.requirements = requirements

    def matches(self, obj):
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self):
        return not self.requirements


def parse_labels(text):
    """Parse a labelSelector query value; raises SelectorError with the wording of
    labels.Parse (k8s.io/apimachinery/pkg/labels/selector.go): errors inside one
    requirement are wrapped in "unable to parse requirement: ", those between
    requirements are not."""
    toks = _tokens(text or "")
    reqs, i = [], 0

    def lit(j):
        return toks[j] if j < len(toks) else ""

    def fail(msg):
        raise SelectorError("unable to parse requirement: " + msg)

    def check_key(k):
        err = key_error(k)
        if err:
            fail('key: Invalid value: "%s": %s' % (k, err))

    def check_value(v, index):
        err = value_error(v)
        if err:
            fail('values[%d]: Invalid value: "%s": %s' % (index, v, err))

    operators = ("=", "==", "!=", "<", ">", "(", ")", ",", "!")
    while i < len(toks):
        t = toks[i]
        if t in operators and t != "!":
            raise SelectorError("found '%s', expected: !, identifier, or 'end of string'" % t)
        if t == "!":
            i += 1
            if i >= len(toks) or toks[i] in operators:
                fail("found '%s', expected: identifier" % lit(i))
            key = toks[i]
            check_key(key)
            reqs.append(Requirement(key, "!"))
            i += 1
        else:
            key = t
            check_key(key)
            i += 1
            op = toks[i] if i < len(toks) else None
            if op is None or op == ",":
                reqs.append(Requirement(key, "exists"))
            elif op in ("=", "==", "!="):
                i += 1
                value = ""
                if i < len(toks) and toks[i] not in operators:
                    value = toks[i]
                    i += 1
                check_value(value, 0)
                reqs.append(Requirement(key, op, [value]))
            elif op in ("<", ">"):
                i += 1
                if i >= len(toks) or toks[i] in operators:
                    fail("found '%s', expected: identifier" % lit(i))
                if not re.fullmatch(r"-?\d+", toks[i]):
                    fail('values[0]: Invalid value: "%s": for \'Gt\', \'Lt\' operators, the '
                         'value must be an integer' % toks[i])
                reqs.append(Requirement(key, op, [toks[i]]))
                i += 1
            elif op in ("in", "notin"):
                i += 1
                if lit(i) != "(":
                    fail("found '%s' expected: '('" % lit(i))
                i += 1
                values, want_value = [], True
                while True:
                    if i >= len(toks):
                        fail("found '', expected: ',', ')' or identifier")
                    t = toks[i]
                    i += 1
                    if t == ")":
                        if want_value and values:
                            values.append("")
                        break
                    if t == ",":
                        if want_value:
                            values.append("")
                        want_value = True
                        continue
                    if not want_value or t in operators:
                        fail("found '%s', expected: ',', or identifier" % t)
                    check_value(t, len(values))
                    values.append(t)
                    want_value = False
                if not values:
                    fail("values: Invalid value: []string{}: for 'in', 'notin' operators, "
                         "values set can't be empty")
                reqs.append(Requirement(key, op, values))
            else:
                fail("found '%s', expected: in, notin, =, ==, !=, gt, lt" % op)
        if i < len(toks):
            if toks[i] != ",":
                raise SelectorError("found '%s', expected: ',' or 'end of string'" % toks[i])
            i += 1
            if i >= len(toks) or (toks[i] in operators and toks[i] != "!"):
                raise SelectorError("found '%s', expected: identifier after ','" % lit(i))
    return LabelSelector(reqs)


class FieldSelector:
    def __init__(self, terms):
        self.terms = terms  # [(field, op, value)]

    def matches(self, fields):
        for f, op, v in self.terms:
            have = fields.get(f)
            if (have == v) != (op != "!="):
                return False
        return True


def parse_fields(text, supported):
    """Parse a fieldSelector; supported is the set of field names the resource knows."""
    terms = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not m:
            raise SelectorError("invalid selector: '%s'; can't understand '%s'" % (text, part))
        field, op, value = m.group(1), m.group(2), m.group(3)
        if field not in supported:
            raise SelectorError('field label not supported: %s' % field)
        terms.append((field, op, value))
    return FieldSelector(terms)
