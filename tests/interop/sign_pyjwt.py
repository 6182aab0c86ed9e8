import base64, hashlib, json, secrets, sys, time, urllib.request

import jwt  # pip install pyjwt cryptography
from cryptography.hazmat.primitives.serialization import load_pem_private_key


def b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def kid(key) -> str:  # RFC 7638 thumbprint: these members, this order, no spaces
    pub = key.public_key().public_numbers()
    jwk = json.dumps({"e": b64(pub.e), "kty": "RSA", "n": b64(pub.n)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(jwk.encode()).digest()).rstrip(b"=").decode()


app_id, key_file, api = sys.argv[1:4]
key = load_pem_private_key(open(key_file, "rb").read(), password=None)
now = int(time.time())
token = jwt.encode(
    {"appId": app_id, "iat": now - 10, "exp": now + 300, "jti": secrets.token_urlsafe(16)},
    key,
    algorithm="RS512",
    headers={"kid": kid(key)},
)
request = urllib.request.Request(api + "/whoami", headers={"x-token": token})
with urllib.request.urlopen(request, timeout=10) as resp:
    who = json.load(resp)
    print(resp.status, who["appId"], who["kid"])
