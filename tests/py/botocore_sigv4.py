"""botocore's own signers against the gateway (run by tests/botocore.rs).

argv: GATEWAY_URL CA_PEM. Signs with `SigV4Auth` (Authorization header) and
`SigV4QueryAuth` (a presigned URL, signature in the query) from botocore, the signing
code of boto3 and the AWS CLI; sends with urllib. For each: an allowed call, a denied
call and tampered calls. Prints one JSON object {case: answer}; the Rust test asserts
on it and on the gateway's audit log.
"""
import hashlib
import json
import sys

from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from e2e_http import send

gateway, ca = sys.argv[1], sys.argv[2]
REGION, SERVICE = "eu-west-1", "execute-api"
CHECKOUT = Credentials("AKIADEMOCHECKOUT0001", "demo+checkout+secret+key+not+for+production")
CATALOGUE = Credentials("AKIADEMOCATALOGUE001", "demo+catalogue+secret+key+not+for+production")
out = {}


def header_signed(creds, method, path, body=b"", headers=None):
    """An AWSRequest signed in its Authorization header."""
    request = AWSRequest(method=method, url=gateway + path, data=body, headers=headers or {})
    SigV4Auth(creds, SERVICE, REGION).add_auth(request)
    return request


def presigned(creds, path, expires=300):
    """A presigned GET URL, valid for `expires` seconds."""
    request = AWSRequest(method="GET", url=gateway + path)
    SigV4QueryAuth(creds, SERVICE, REGION, expires=expires).add_auth(request)
    return request.url


# --- SigV4Auth: the Authorization header ---------------------------------------------

r = header_signed(CHECKOUT, "GET", "/order/orders/42")
out["header_allowed"] = send("GET", r.url, r.headers.items(), b"", ca)

r = header_signed(CATALOGUE, "GET", "/order/orders/42")
out["header_denied"] = send("GET", r.url, r.headers.items(), b"", ca)

# Signed for /order/orders/42, sent to /order/orders/43.
r = header_signed(CHECKOUT, "GET", "/order/orders/42")
out["header_tampered_path"] = send("GET", gateway + "/order/orders/43", r.headers.items(), b"", ca)

# A body whose SHA-256 is signed in x-amz-content-sha256, swapped after signing.
body = b'{"sku":"sku-1","quantity":1}'
r = header_signed(
    CHECKOUT,
    "POST",
    "/order/orders",
    body,
    {"content-type": "application/json", "x-amz-content-sha256": hashlib.sha256(body).hexdigest()},
)
out["header_signed_body"] = send("POST", r.url, r.headers.items(), body, ca)
out["header_tampered_body"] = send("POST", r.url, r.headers.items(), b'{"sku":"sku-1","quantity":9}', ca)

# --- SigV4QueryAuth: presigned URLs ----------------------------------------------------

url = presigned(CHECKOUT, "/order/orders/42")
out["query_url"] = url
out["query_allowed"] = send("GET", url, {}, b"", ca)

out["query_denied"] = send("GET", presigned(CATALOGUE, "/order/orders/42"), {}, b"", ca)

url = presigned(CHECKOUT, "/order/orders/42")
out["query_tampered_path"] = send("GET", url.replace("/order/orders/42?", "/order/orders/43?"), {}, b"", ca)

# The expiry is signed too: a URL cannot be made to live longer.
url = presigned(CHECKOUT, "/order/orders/42", expires=300)
assert "X-Amz-Expires=300&" in url, url
out["query_tampered_expires"] = send("GET", url.replace("X-Amz-Expires=300&", "X-Amz-Expires=3600&"), {}, b"", ca)

print(json.dumps(out))
