"""Verifies an appauth token the way a third-party verifier would: PyJWT,
given only the URL of the app's JWK Set (no key file, no appauth code).

    python3 pyjwt_remote_jwks.py JWKS_URL TOKEN ISSUER

Prints the verified appId; exits non-zero if the token does not verify.
"""
import sys

import jwt

url, token, issuer = sys.argv[1:4]
signing_key = jwt.PyJWKClient(url, cache_keys=False).get_signing_key_from_jwt(token)
claims = jwt.decode(
    token,
    signing_key.key,
    algorithms=["RS512"],
    issuer=issuer,
    options={"require": ["exp", "iat", "iss", "sub"]},
)
assert claims["sub"] == issuer, claims
print(claims["appId"])
