#!/usr/bin/env python3
"""pbc_client.py: how a PBC calls another PBC through the SigV4 gateway, in Python.

Every call is an ordinary HTTPS request signed with AWS Signature Version 4 by
botocore's `SigV4Auth`, the signer of boto3 and the AWS CLI. Nothing in the signing is
gateway-specific: the gateway is one more AWS-style endpoint (region eu-west-1,
service execute-api in the demo). The steps, each a function below:

  1. credentials():  the PBC's key from the environment (AWS_ACCESS_KEY_ID,
     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) or any botocore source (profile, ...);
     or, with --assume-role, a session from the gateway's STS via boto3 (assume_role()).
  2. sign():         sign method, URL, headers and body with SigV4Auth.
  3. send():         send exactly those bytes with urllib, trusting the mesh's CA.
  4. main():         print the status and the body; on an error answer print the AWS
                     error code (x-amzn-ErrorType) and message, and exit with 1.

The gateway routes by the first path segment: /order/orders/42 reaches the order PBC
as /orders/42, if the allow matrix lets the caller's role do it.

Needs botocore (pip install botocore; boto3 too for --assume-role). Examples, against
`gateway demo` (it prints its port and CA path):

  export AWS_ACCESS_KEY_ID=AKIADEMOCHECKOUT0001
  export AWS_SECRET_ACCESS_KEY=demo+checkout+secret+key+not+for+production
  python3 pbc_client.py --ca /tmp/sigv4-gateway-demo/ca.pem https://127.0.0.1:8443 GET /order/orders/42
  python3 pbc_client.py --ca /tmp/sigv4-gateway-demo/ca.pem https://127.0.0.1:8443 POST /order/orders '{"sku":"sku-1"}'
  python3 pbc_client.py --ca /tmp/sigv4-gateway-demo/ca.pem \\
      --assume-role arn:aws:iam::111122223333:role/CheckoutToOrderRole \\
      https://127.0.0.1:8443 GET /order/orders/42
"""
import argparse
import json
import os
import re
import ssl
import sys
import urllib.error
import urllib.request
from xml.sax.saxutils import unescape

import botocore.credentials
import botocore.exceptions
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest


def credentials():
    """Step 1: the PBC's credentials, found the way boto3 finds them: the environment
    (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) first, then
    AWS_PROFILE / the shared credentials file, container or instance roles."""
    found = botocore.session.Session().get_credentials()
    if found is None:
        sys.exit("pbc_client: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                 "(and AWS_SESSION_TOKEN for session credentials)")
    # A frozen copy: key, secret and token that belong together.
    return found.get_frozen_credentials()


def assume_role(gateway, ca, region, creds, role_arn, session_name):
    """--assume-role: boto3's STS client talks to the gateway's STS (<gateway>/sts)
    exactly as to AWS STS; only the endpoint URL and the CA bundle change."""
    import boto3  # only needed here

    sts = boto3.client(
        "sts",
        endpoint_url=gateway + "/sts",
        region_name=region,
        verify=ca,
        aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
    )
    session = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name)["Credentials"]
    return botocore.credentials.ReadOnlyCredentials(
        session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"]
    )


def sign(creds, region, service, method, url, body, content_type):
    """Step 2: a SigV4-signed request. SigV4Auth adds Authorization and X-Amz-Date (and
    X-Amz-Security-Token for session credentials); the body's SHA-256 is part of the
    signature, so the gateway refuses a body changed on the way."""
    headers = {"Content-Type": content_type} if body else {}
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(creds, service, region).add_auth(request)
    return request


def send(request, ca):
    """Step 3: send the signed request as is. Returns (status, headers, body bytes),
    error answers included. `ca` is the CA bundle to trust (None: the system's)."""
    context = ssl.create_default_context(cafile=ca)
    wire = urllib.request.Request(
        request.url,
        data=request.body or None,
        method=request.method,
        headers=dict(request.headers.items()),
    )
    try:
        with urllib.request.urlopen(wire, context=context) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def aws_error(headers, body):
    """The AWS error code and message of an error answer: the gateway sends the code in
    x-amzn-ErrorType and a JSON body {"code","message","requestId"}; its STS sends XML."""
    text = body.decode("utf-8", "replace")
    code = headers.get("x-amzn-ErrorType")
    try:
        parsed = json.loads(text)
        return code or parsed.get("code", "-"), parsed.get("message", "")
    except ValueError:
        pass
    xml_code = re.search(r"<Code>(.*?)</Code>", text, re.S)
    message = re.search(r"<Message>(.*?)</Message>", text, re.S)
    return (code or (xml_code and unescape(xml_code.group(1))) or "-",
            unescape(message.group(1)) if message else "")


def main():
    parser = argparse.ArgumentParser(
        description="Call a PBC through the SigV4 gateway: sign with botocore's SigV4Auth, "
                    "send over TLS, print the answer. Exits 1 on a non-2xx answer.",
        epilog="Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN "
               "(or any botocore source). Example: pbc_client.py --ca ca.pem "
               "https://127.0.0.1:8443 GET /order/orders/42",
    )
    parser.add_argument("gateway", help="the gateway's base URL, e.g. https://127.0.0.1:8443")
    parser.add_argument("method", help="GET, POST, PUT, DELETE, ...")
    parser.add_argument("path", help="/<target PBC>/<path at the target>[?query], e.g. /order/orders/42")
    parser.add_argument("body", nargs="?", default="", help="the request body; @FILE reads FILE")
    parser.add_argument("--ca", default=os.environ.get("AWS_CA_BUNDLE") or None,
                        help="CA bundle (PEM) for the gateway's certificate "
                             "(default: $AWS_CA_BUNDLE, else the system's)")
    parser.add_argument("--region", default="eu-west-1", help="SigV4 region (default eu-west-1)")
    parser.add_argument("--service", default="execute-api", help="SigV4 service (default execute-api)")
    parser.add_argument("--content-type", default="application/json", help="the body's content type")
    parser.add_argument("--assume-role", metavar="ROLE_ARN",
                        help="assume this role through <gateway>/sts first (boto3), and call with the session")
    parser.add_argument("--role-session-name", default="pbc-client", help="session name for --assume-role")
    parser.add_argument("-i", "--include", action="store_true", help="print the response headers too")
    args = parser.parse_args()

    gateway = args.gateway.rstrip("/")
    body = args.body.encode()
    if args.body.startswith("@"):
        with open(args.body[1:], "rb") as f:
            body = f.read()

    creds = credentials()
    if args.assume_role:
        try:
            creds = assume_role(gateway, args.ca, args.region, creds, args.assume_role, args.role_session_name)
        except botocore.exceptions.ClientError as e:
            error = e.response["Error"]
            sys.exit(f"pbc_client: AssumeRole {args.assume_role}: {error.get('Code')}: {error.get('Message')}")
        print(f"pbc_client: assumed {args.assume_role} as session {args.role_session_name} "
              f"(access key {creds.access_key})", file=sys.stderr)

    request = sign(creds, args.region, args.service, args.method, gateway + args.path, body, args.content_type)
    status, headers, answer = send(request, args.ca)

    print(status)
    if args.include:
        for name, value in headers.items():
            print(f"{name}: {value}")
        print()
    print(answer.decode("utf-8", "replace"))
    if 200 <= status < 300:
        return 0
    code, message = aws_error(headers, answer)
    print(f"pbc_client: {status} {code}: {message} (request id {headers.get('x-amzn-RequestId', '-')})",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
