"""boto3 against the gateway's STS, as a PBC would use it (run by gateway/tests/sts.rs).

argv: BASE_URL CA_PEM. Prints one JSON object with what happened; the Rust test
asserts on it.
"""
import json
import sys

import boto3
import botocore
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

base, ca = sys.argv[1], sys.argv[2]
REGION = "eu-west-1"
ROLE = "arn:aws:iam::111122223333:role/CheckoutToOrderRole"
out = {}


def sts(key, secret, token=None):
    return boto3.client(
        "sts",
        endpoint_url=base + "/sts",
        region_name=REGION,
        verify=ca,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def call(creds, method, path, body=""):
    url = base + path
    req = AWSRequest(method=method, url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(creds, "execute-api", REGION).add_auth(req)
    resp = requests.request(method, url, data=body, headers=dict(req.headers), verify=ca)
    return resp.status_code, resp.headers.get("x-amzn-errortype")


checkout = sts("AKIADEMOCHECKOUT0001", "demo+checkout+secret+key+not+for+production")
out["static_identity"] = checkout.get_caller_identity()["Arn"]
r = checkout.assume_role(RoleArn=ROLE, RoleSessionName="pod-7", SourceIdentity="alice", DurationSeconds=900)
c = r["Credentials"]
out["assumed_arn"] = r["AssumedRoleUser"]["Arn"]
out["access_key_id"] = c["AccessKeyId"]
out["source_identity"] = r.get("SourceIdentity")
session = sts(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
out["session_identity"] = session.get_caller_identity()["Arn"]
creds = botocore.credentials.Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
out["create_order"] = call(creds, "POST", "/order/orders", '{"sku":"sku-1"}')
out["call_payment"] = call(creds, "POST", "/payment/payments", "{}")
# Role chaining: over an hour is refused, the source identity is kept.
try:
    session.assume_role(RoleArn=ROLE, RoleSessionName="chained", DurationSeconds=7200)
    out["chain_over_an_hour"] = "allowed"
except botocore.exceptions.ClientError as e:
    out["chain_over_an_hour"] = e.response["Error"]["Code"]
try:
    session.assume_role(RoleArn=ROLE, RoleSessionName="chained", SourceIdentity="mallory")
    out["chain_new_source"] = "allowed"
except botocore.exceptions.ClientError as e:
    out["chain_new_source"] = e.response["Error"]["Code"]
# Tampered token and a token paired with another access key id.
bad = sts(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"][:-6] + ("AAAAAA" if not c["SessionToken"].endswith("AAAAAA") else "BBBBBB"))
try:
    bad.get_caller_identity()
    out["tampered"] = "allowed"
except botocore.exceptions.ClientError as e:
    out["tampered"] = e.response["Error"]["Code"]
other = checkout.assume_role(RoleArn=ROLE, RoleSessionName="other")["Credentials"]
swapped = sts(other["AccessKeyId"], other["SecretAccessKey"], c["SessionToken"])
try:
    swapped.get_caller_identity()
    out["swapped"] = "allowed"
except botocore.exceptions.ClientError as e:
    out["swapped"] = e.response["Error"]["Code"]
# A caller the trust policy does not name.
catalogue = sts("AKIADEMOCATALOGUE001", "demo+catalogue+secret+key+not+for+production")
try:
    catalogue.assume_role(RoleArn=ROLE, RoleSessionName="x1")
    out["untrusted"] = "allowed"
except botocore.exceptions.ClientError as e:
    out["untrusted"] = e.response["Error"]["Code"]
print(json.dumps(out))
