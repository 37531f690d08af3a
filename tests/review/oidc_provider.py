"""A real OpenID Connect provider for tests, in the test process: Authlib's server side
(AuthorizationServer, the authorization code grant with the OpenIDCode extension) on Flask,
served over TLS on a loopback port.

It is a provider, not a stand-in for one: discovery, the JWKS, RS256-signed ID tokens, the
authorization code flow with client authentication and nonce are the protocol as a real
identity provider speaks it, so the console's Authlib client verifies everything it would in
production. ``tamper`` makes the next ID tokens wrong in one way (issuer, audience, nonce, or
signed by a key the JWKS does not hold) to prove the console refuses them.
"""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

TAMPERS = (None, "issuer", "audience", "nonce", "foreign_key")


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uri

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "profile", "email"))

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post") if endpoint == "token" else True

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    username: str
    auth_time: int
    expires_at: float = field(default_factory=lambda: time.time() + 60)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None

    def is_expired(self):
        return time.time() > self.expires_at


@dataclass(frozen=True)
class Person:
    username: str
    password: str
    claims: dict


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 (also its own CA: the console trusts it by file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test identity provider")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "idp.crt", folder / "idp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class Provider:
    """``with Provider(folder, client) as idp``: serves https://localhost:PORT until the block ends."""

    def __init__(self, folder: Path, client_id: str, client_secret: str, redirect_uri: str, port: int) -> None:
        self.issuer = f"https://localhost:{port}"
        self.port = port
        self.client = Client(client_id, client_secret, redirect_uri)
        self.key = RSAKey.generate_key(2048, parameters={"kid": "idp-1", "use": "sig", "alg": "RS256"})
        # Same key id, another key: a token it signs must fail the signature check against the JWKS.
        self.foreign = RSAKey.generate_key(2048, parameters={"kid": "idp-1", "use": "sig", "alg": "RS256"})
        self.people: dict[str, Person] = {}
        self.codes: dict[str, Code] = {}
        self.tamper: str | None = None
        self.tokens_issued = 0
        self.cert, key_file = self_signed(folder)
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(self.cert, key_file)
        self.app = self._build()
        self._server = None
        self._thread = None

    def add_person(self, username: str, password: str, **claims) -> None:
        self.people[username] = Person(username, password, claims)

    # -- the Authlib server ----------------------------------------------------------------------
    def _build(self) -> Flask:
        provider = self
        app = Flask("test-idp")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 300}

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code, req):
                provider.codes[code] = Code(code, req.client.client_id, req.payload.redirect_uri, req.payload.scope,
                                            req.payload.data.get("nonce"), req.user.username, int(time.time()))

            def query_authorization_code(self, code, client):
                found = provider.codes.get(code)
                return found if found is not None and found.client_id == client.client_id and not found.is_expired() else None

            def delete_authorization_code(self, authorization_code):
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code):
                return provider.people.get(authorization_code.username)

        class IdToken(OpenIDCode):
            def exists_nonce(self, nonce, req):
                return any(c.nonce == nonce and c.client_id == req.payload.client_id for c in provider.codes.values())

            def resolve_client_private_key(self, client):
                return provider.foreign if provider.tamper == "foreign_key" else provider.key

            def get_client_algorithm(self, client):
                return "RS256"

            def get_client_claims(self, client):
                issuer = "https://attacker.invalid" if provider.tamper == "issuer" else provider.issuer
                audience = "another-client" if provider.tamper == "audience" else client.client_id
                return {"iss": issuer, "aud": [audience], "exp": int(time.time()) + 300}

            def get_authorization_code_claims(self, authorization_code):
                claims = super().get_authorization_code_claims(authorization_code)
                if provider.tamper == "nonce":
                    claims["nonce"] = "not-the-nonce-the-console-sent"
                provider.tokens_issued += 1
                return claims

            def generate_user_info(self, user, scope):
                return UserInfo(sub="sub-" + user.username, preferred_username=user.username, **user.claims)

        server = AuthorizationServer(app, query_client=lambda cid: provider.client if cid == provider.client.client_id else None,
                                     save_token=lambda token, req: None)
        server.register_grant(CodeGrant, [IdToken(require_nonce=True)])

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify({
                "issuer": provider.issuer,
                "authorization_endpoint": provider.issuer + "/authorize",
                "token_endpoint": provider.issuer + "/token",
                "jwks_uri": provider.issuer + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            })

        @app.get("/jwks")
        def jwks():
            return jsonify(KeySet([provider.key]).as_dict(private=False))

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            if request.method == "GET":
                server.get_consent_grant(end_user=None)  # validates client, redirect URI, scope, nonce
                action = escape("/authorize?" + request.query_string.decode())  # the request's parameters ride along
                return (f'<!doctype html><title>Test identity provider</title><form method="post" action="{action}">'
                        '<input id="idp-username" name="username"><input id="idp-password" name="password" type="password">'
                        '<button id="idp-sign-in" type="submit">Sign in</button></form>')
            person = provider.people.get(request.form.get("username", ""))
            if person is None or not secrets.compare_digest(person.password, request.form.get("password", "")):
                return "wrong user name or password", 401
            grant = server.get_consent_grant(end_user=person)
            return server.create_authorization_response(grant=grant, grant_user=person)

        @app.post("/token")
        def token():
            return server.create_token_response()

        return app

    # -- serving ---------------------------------------------------------------------------------
    def __enter__(self) -> Provider:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True, ssl_context=self._ssl)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._server.shutdown()
        self._thread.join(10)
