"""Builds the `Request` field of the gateway's AssumeRoleWithAWSIdentity with botocore,
the way a PBC holding real AWS credentials would: a signed sts:GetCallerIdentity POST
(never sent), with the gateway's audience header signed into it, as base64 JSON
{method, url, headers: {name: [value]}, body}.

usage: aws_bridge_request.py URL REGION ACCESS_KEY_ID SECRET SESSION_TOKEN HEADER AUDIENCE
Prints the field on stdout.
"""

import base64
import json
import sys
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main() -> None:
    url, region, akid, secret, token, header, audience = sys.argv[1:8]
    body = "Action=GetCallerIdentity&Version=2011-06-15"
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            header: audience,
        },
    )
    SigV4Auth(Credentials(akid, secret, token or None), "sts", region).add_auth(request)
    # botocore signs the URL's host but leaves the Host header to the HTTP library; the
    # gateway needs it spelled out, as it will send it.
    headers = {"Host": [urlsplit(url).netloc]}
    for name, value in request.headers.items():
        headers[name] = [value]
    document = {"method": request.method, "url": url, "headers": headers, "body": body}
    print(base64.b64encode(json.dumps(document).encode()).decode())


if __name__ == "__main__":
    main()
