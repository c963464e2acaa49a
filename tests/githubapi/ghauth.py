"""Authentication for the stand-in GitHub API: App JWTs, installation tokens and PATs.

GitHub's rules, as documented and as its API words its refusals:
- An App authenticates with `Authorization: Bearer <JWT>`, RS256, signed with the App's
  private key; `iss` is the App's id (an integer, or its text), `iat` may be at most 60 s in
  the future (clock drift), `exp` must be in the future, at most 10 minutes after `iat` and at
  most 10 minutes from now.
- `POST /app/installations/{id}/access_tokens` (JWT only) gives an installation token,
  `ghs_` and 36 characters, with an `expires_at`.
- Installation tokens and personal access tokens authorize the repository endpoints, as
  `Authorization: token X` or `Authorization: Bearer X`.

Tokens are kept by their sha256 only, and nothing here logs a token or a JWT.
Needs Debian's python3-jwt and python3-cryptography.
"""

import base64
import hashlib
import json
import os
import secrets
import string
import subprocess
import threading
import time

BAD_CREDENTIALS = "Bad credentials"
JWT_UNDECODABLE = "A JSON web token could not be decoded"
JWT_EXP_TOO_FAR = "'Expiration time' claim ('exp') is too far in the future"
JWT_EXP_PAST = ("'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires")
JWT_IAT_BAD = ("'Issued at' claim ('iat') must be an Integer representing the time that the "
               "assertion was issued")
JWT_ISS_BAD = "'Issuer' claim ('iss') must be an Integer"
JWT_DRIFT = 60      # seconds an iat may lie in the future
JWT_MAX_LIFE = 600  # exp - iat, and exp - now, at most

# What a new installation grants when the test says nothing: what gpuhook's App asks for.
DEFAULT_PERMISSIONS = {"checks": "write", "statuses": "write", "contents": "read",
                       "pull_requests": "read", "metadata": "read"}
ALPHABET = string.ascii_letters + string.digits


def digest(token):
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def make_app_key(directory, bits=2048):
    """Write a fresh RSA key pair for a test App: app.private-key.pem (PKCS#1, as GitHub hands
    it out) and app.public-key.pem. Returns {"private": path, "public": path}."""
    os.makedirs(directory, exist_ok=True)
    priv = os.path.join(directory, "app.private-key.pem")
    pub = os.path.join(directory, "app.public-key.pem")
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", priv, str(bits)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.chmod(priv, 0o600)
    subprocess.run(["openssl", "rsa", "-in", priv, "-pubout", "-out", pub],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"private": priv, "public": pub}


def sign_app_jwt(private_key_file, app_id, iat=None, exp=None, alg="RS256", headers=None):
    """An App JWT the way GitHub's docs build one (iat 60 s ago, exp 9 minutes on), for
    tests that call the API directly; iat and exp may be given to build bad ones."""
    import jwt  # python3-jwt

    now = int(time.time())
    payload = {"iat": now - 60 if iat is None else iat,
               "exp": now + 540 if exp is None else exp, "iss": app_id}
    with open(private_key_file, "rb") as f:
        key = f.read()
    tok = jwt.encode(payload, key, algorithm=alg, headers=headers)
    return tok.decode() if isinstance(tok, bytes) else tok


class AuthError(Exception):
    """A refusal: HTTP status and GitHub's message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def _b64json(part):
    pad = "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(part + pad))


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def verify_app_jwt(token, app_id, public_key_pem, now=None):
    """Check an App JWT as GitHub does. Returns the claims or raises AuthError(401, ...)."""
    import jwt  # python3-jwt

    now = time.time() if now is None else now
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError(401, JWT_UNDECODABLE)
    try:
        header, claims = _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, TypeError):
        raise AuthError(401, JWT_UNDECODABLE) from None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or not isinstance(claims, dict):
        raise AuthError(401, JWT_UNDECODABLE)
    iss = claims.get("iss")
    if _is_int(iss):
        iss = str(iss)
    if not isinstance(iss, str) or not iss:
        raise AuthError(401, JWT_ISS_BAD)
    if iss != str(app_id):
        raise AuthError(401, JWT_UNDECODABLE)  # another App's key would be needed
    try:
        jwt.decode(token, public_key_pem, algorithms=["RS256"],
                   options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                            "verify_aud": False, "verify_iss": False})
    except jwt.PyJWTError:
        raise AuthError(401, JWT_UNDECODABLE) from None
    iat, exp = claims.get("iat"), claims.get("exp")
    if not _is_int(iat) or iat > now + JWT_DRIFT:
        raise AuthError(401, JWT_IAT_BAD)
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp <= now:
        raise AuthError(401, JWT_EXP_PAST)
    if exp - iat > JWT_MAX_LIFE or exp > now + JWT_MAX_LIFE:
        raise AuthError(401, JWT_EXP_TOO_FAR)
    return claims


def looks_like_jwt(token):
    return token.count(".") == 2 and token.startswith("eyJ")


class Credentials:
    """The App, its installations, the tokens issued and the configured PATs."""

    def __init__(self, app_id=None, public_key_file=None, installations=(), token_ttl=3600):
        self.lock = threading.Lock()
        self.app_id = app_id
        self.public_key = None
        if public_key_file:
            with open(public_key_file, "rb") as f:
                self.public_key = f.read()
        self.installations = {}
        for inst in installations:
            self.add_installation(inst)
        self.token_ttl = token_ttl
        self.tokens = {}   # sha256 -> {"installation_id", "expires_at", "permissions", "repos"}
        self.pats = {}     # sha256 -> {"login", "id"}
        self.issued = 0

    def add_installation(self, inst):
        inst = dict(inst)
        inst["id"] = int(inst["id"])
        inst.setdefault("account", "octo-org")
        inst.setdefault("repositories", None)  # None: every repository of the account
        inst.setdefault("permissions", dict(DEFAULT_PERMISSIONS))
        self.installations[inst["id"]] = inst
        return inst

    def add_pat(self, token, login="octocat", user_id=1):
        with self.lock:
            self.pats[digest(token)] = {"login": login, "id": user_id}

    def app_configured(self):
        return self.app_id is not None and self.public_key is not None

    def check_jwt(self, token, now=None):
        if not self.app_configured():
            raise AuthError(401, JWT_UNDECODABLE)
        return verify_app_jwt(token, self.app_id, self.public_key, now)

    def issue(self, installation_id, permissions=None, repositories=None, ttl=None, now=None):
        """A new installation token. Returns (token, record)."""
        now = time.time() if now is None else now
        inst = self.installations[installation_id]
        granted = inst["permissions"]
        perms = dict(granted) if not permissions else dict(permissions)
        token = "ghs_" + "".join(secrets.choice(ALPHABET) for _ in range(36))
        life = self.token_ttl if ttl is None else ttl
        rec = {"installation_id": installation_id, "expires_at": now + life,
               "permissions": perms, "repos": repositories, "issued_at": int(now)}
        with self.lock:
            self.tokens[digest(token)] = rec
            self.issued += 1
        return token, rec

    @staticmethod
    def permissions_exceed(requested, granted):
        order = {"read": 1, "write": 2, "admin": 3}
        for k, v in (requested or {}).items():
            if order.get(v, 9) > order.get(granted.get(k), 0):
                return True
        return False

    def identify(self, token, now=None):
        """Who a token is, or raises AuthError(401, "Bad credentials").

        Returns {"kind": "installation"|"pat", ...}."""
        now = time.time() if now is None else now
        with self.lock:
            rec = self.tokens.get(digest(token))
            pat = self.pats.get(digest(token))
        if rec:
            if rec["expires_at"] <= now:
                raise AuthError(401, BAD_CREDENTIALS)
            return dict(rec, kind="installation")
        if pat:
            return dict(pat, kind="pat")
        raise AuthError(401, BAD_CREDENTIALS)

    def to_state(self):
        with self.lock:
            return {"tokens": self.tokens, "issued": self.issued}

    def load_state(self, state):
        with self.lock:
            self.tokens = dict(state.get("tokens", {}))
            self.issued = state.get("issued", 0)
